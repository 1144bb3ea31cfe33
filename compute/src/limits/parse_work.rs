//! A bound on the SQL parser's backtracking over nested `CASE`.
//!
//! When a `CASE` expression fails to parse, the parser (sqlparser) rolls back and reads the
//! word `CASE` as a column name instead; the enclosing `CASE` then sees `WHEN` and parses the
//! inner part again. Each level of nesting doubles the work, so a damaged `CASE` nested 40
//! deep, a few hundred bytes, kept a core busy for good (found by the fuzz tests). The
//! parser's recursion limit does not stop it: the recursion is never deeper than the text.
//!
//! So before parsing, the text is tokenized (linear) and its `CASE` nesting measured: the
//! worst-case work is about the text's length times 2 to the nesting, and a text over
//! [`PARSE_WORK_BUDGET`] is refused with `INVALID_ARGUMENT`. Real queries nest `CASE` a few
//! levels; a 1 KiB text may nest 15, a 1 MiB one 5.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::ComputeError;

/// Text bytes the parser may be made to read, counting re-reads: about a second of parsing.
pub const PARSE_WORK_BUDGET: usize = 32 << 20;

/// Shortest length the estimate assumes, so a short text still has a bounded nesting.
const MIN_ESTIMATED_BYTES: usize = 1024;

/// Refuses `text` when its nested `CASE` expressions could make the parser's work exceed
/// [`PARSE_WORK_BUDGET`]. Text that does not tokenize passes: the parser fails on it at once.
pub fn check_case_nesting(text: &str, what: &str) -> Result<(), ComputeError> {
    // Nothing to measure without the word (the common case costs one scan).
    if !text.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"case")) {
        return Ok(());
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else { return Ok(()) };
    let nesting = case_nesting(&tokens);
    let allowed = allowed_nesting(text.len());
    if nesting > allowed {
        return Err(ComputeError::InvalidArgument(format!(
            "the {what} nests CASE {nesting} deep; at most {allowed} are accepted in {} bytes of text (each level can double \
             the parser's work)",
            text.len()
        )));
    }
    Ok(())
}

/// The deepest nesting of `CASE … END` among `tokens`.
fn case_nesting(tokens: &[Token]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for token in tokens {
        if let Token::Word(w) = token {
            if w.quote_style.is_some() {
                continue;
            }
            match w.keyword {
                Keyword::CASE => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                Keyword::END => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    deepest
}

/// The deepest `CASE` nesting whose worst-case parse of `len` bytes stays in the budget.
fn allowed_nesting(len: usize) -> usize {
    let len = len.max(MIN_ESTIMATED_BYTES);
    (PARSE_WORK_BUDGET / len).max(1).ilog2() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParserBuilder;

    fn nested_case(n: usize) -> String {
        format!("{}1{} = 1", "CASE WHEN TRUE THEN ".repeat(n), " END".repeat(n))
    }

    #[test]
    fn a_damaged_deep_case_is_refused_before_the_parser_backtracks_through_it() {
        // Without the check this parse doubles its work per level: 40 levels do not finish.
        let damaged = nested_case(40).replacen("THEN 1", "1", 1);
        let err = check_case_nesting(&damaged, "filter").unwrap_err();
        assert!(err.to_string().contains("nests CASE 40 deep; at most 15"), "{err}");
        // The deepest accepted nesting, damaged the same way, parses (to an error) at once.
        let deepest = nested_case(15).replacen("THEN 1", "1", 1);
        check_case_nesting(&deepest, "filter").unwrap();
        let _ = DFParserBuilder::new(deepest.as_str()).build().and_then(|mut p| p.parse_expr());
    }

    #[test]
    fn case_in_strings_identifiers_and_shallow_queries_passes() {
        check_case_nesting("tag = 'CASE CASE CASE' AND \"case\" = 1", "filter").unwrap();
        check_case_nesting("SELECT CASE WHEN a > 1 THEN 'x' ELSE CASE WHEN b THEN 'y' END END FROM t", "query").unwrap();
        assert_eq!(allowed_nesting(1 << 20), 5);
        assert_eq!(allowed_nesting(10), 15);
    }
}
