//! Size and depth limits on filter and SQL text, checked before DataFusion plans it, and the
//! rewrites that keep large but reasonable expressions cheap.
//!
//! Why here, before DataFusion: the SQL parser parses a left-deep chain (`a OR b OR c …`,
//! `x + 1 + 1 …`, `v IS NULL IS NULL …`) in a loop, so 30 KB of text makes a tree thousands
//! of levels deep, and some of what walks that tree afterwards (derived `Drop`, `Hash` and
//! `PartialEq`, expression evaluation) recurses without stack protection. A 2,000-term
//! `OR` chain overflowed a runtime thread's stack and aborted the whole process. Constructs
//! that nest through the parser's recursion (parentheses, `NOT`, `CASE`, subqueries) are
//! already bounded by its recursion limit; chains are not, so:
//!
//! 1. the text is refused above [`ExprLimits::max_bytes`];
//! 2. it is parsed, and on a thread with a stack sized for the deepest tree that many bytes
//!    can make (so parsing, rewriting and dropping the original tree cannot overflow);
//! 3. every chain of `AND` or of `OR` is flattened and rebuilt as a balanced tree (depth
//!    log₂ n instead of n), and within an `OR`, equalities of one column with literals (and
//!    `IN` lists of literals) become one `col IN (…)` — what DataFusion plans in
//!    milliseconds, where the chain took a second for 1,000 terms;
//! 4. the depth of the result is measured, and a tree deeper than [`ExprLimits::max_depth`]
//!    is refused with `INVALID_ARGUMENT` before it is planned. Below that depth, planning and
//!    execution fit in a runtime thread's stack.
//!
//! The rewrites keep the meaning: `AND` and `OR` are associative and commutative in SQL's
//! three-valued logic, and `c = 1 OR c = 2` is `c IN (1, 2)`, nulls included.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, ExprWithAlias, UnaryOperator, Value, VisitMut, VisitorMut};

use crate::error::ComputeError;

/// The most a configuration may raise [`ExprLimits::max_depth`] to: the depth up to which
/// planning and evaluation are known to fit a runtime thread's stack.
pub const HARD_MAX_EXPR_DEPTH: usize = 1_000;

/// Text below this size is prepared on the caller's thread: it cannot make a tree deep
/// enough to matter.
const SMALL_TEXT_BYTES: usize = 16 * 1024;

/// Stack bytes per byte of text for the preparing thread: a chain level takes at least three
/// bytes of text (`a=1`) and its `Drop` a few hundred bytes of stack.
const STACK_PER_TEXT_BYTE: usize = 128;

/// Size and depth limits of one expression or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExprLimits {
    /// Largest text, in bytes.
    pub max_bytes: usize,
    /// Deepest expression nesting after the rewrites.
    pub max_depth: usize,
}

impl Default for ExprLimits {
    fn default() -> Self {
        super::Limits::default().expr()
    }
}

/// Parses a search filter with `parse` and prepares it (size check, rewrites, depth check).
/// `parse` runs on a thread with a large enough stack when the text is long.
pub fn prepare_filter<P>(text: &str, limits: ExprLimits, parse: P) -> Result<ExprWithAlias, ComputeError>
where
    P: FnOnce(&str) -> Result<ExprWithAlias, ComputeError> + Send,
{
    prepare("filter", text, limits, |text| {
        let mut parsed = parse(text)?;
        shape(&mut parsed.expr, limits.max_depth, "filter")?;
        Ok(parsed)
    })
}

/// Parses a SQL statement with `parse` and prepares every expression in it (size check,
/// rewrites, depth check).
pub fn prepare_statement<P>(text: &str, limits: ExprLimits, parse: P) -> Result<DfStatement, ComputeError>
where
    P: FnOnce(&str) -> Result<DfStatement, ComputeError> + Send,
{
    prepare("query", text, limits, |text| {
        let mut statement = parse(text)?;
        shape_statement(&mut statement, limits.max_depth)?;
        Ok(statement)
    })
}

/// Checks the size of `text` and runs `work` on it, on a thread with a stack sized for it
/// when the text is long.
fn prepare<T: Send>(
    what: &str,
    text: &str,
    limits: ExprLimits,
    work: impl FnOnce(&str) -> Result<T, ComputeError> + Send,
) -> Result<T, ComputeError> {
    if text.len() > limits.max_bytes {
        return Err(ComputeError::InvalidArgument(format!(
            "the {what} is {} bytes; at most {} are accepted (limits/max_query_bytes): for long lists of values use `col IN (…)`, or split the request",
            text.len(),
            limits.max_bytes
        )));
    }
    super::parse_work::check_case_nesting(text, what)?;
    if text.len() <= SMALL_TEXT_BYTES {
        return work(text);
    }
    let stack = (text.len() * STACK_PER_TEXT_BYTE).max(8 << 20);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("grape-expr".into())
            .stack_size(stack)
            .spawn_scoped(scope, || work(text))
            .map_err(|e| ComputeError::Internal(format!("cannot start a thread to parse the {what}: {e}")))?;
        worker.join().map_err(|_| ComputeError::Internal(format!("parsing the {what} failed unexpectedly")))?
    })
}

/// Rewrites every expression of `statement` and checks its depth.
fn shape_statement(statement: &mut DfStatement, max_depth: usize) -> Result<(), ComputeError> {
    match statement {
        DfStatement::Statement(s) => run_shaper(|v| s.visit(v), max_depth, "query"),
        DfStatement::Explain(e) => shape_statement(&mut e.statement, max_depth),
        // COPY and CREATE EXTERNAL TABLE are refused when planned; they carry no expression
        // worth protecting.
        _ => Ok(()),
    }
}

/// Rewrites `expr` and checks its depth.
fn shape(expr: &mut Expr, max_depth: usize, what: &str) -> Result<(), ComputeError> {
    run_shaper(|v| expr.visit(v), max_depth, what)
}

/// Runs a [`Shaper`] through `visit`, turning a depth overflow into an error.
fn run_shaper(visit: impl FnOnce(&mut Shaper) -> ControlFlow<()>, max_depth: usize, what: &str) -> Result<(), ComputeError> {
    let mut shaper = Shaper { depth: 0, max_depth };
    match visit(&mut shaper) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(ComputeError::InvalidArgument(format!(
            "the {what} nests expressions more than {max_depth} deep (limits/max_expr_depth): write long chains of AND, OR or \
             equalities on one column (they are balanced and turned into IN lists for you), not deeply nested arithmetic or \
             functions"
        ))),
    }
}

/// The visitor that balances chains and measures depth. It rewrites a node before it
/// descends into it, so it never walks an unbalanced chain, and it stops as soon as the
/// depth passes the limit, so its own recursion is bounded.
struct Shaper {
    /// Depth of the node being visited.
    depth: usize,
    /// Deepest allowed.
    max_depth: usize,
}

impl VisitorMut for Shaper {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return ControlFlow::Break(());
        }
        if let Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } = expr {
            let op = op.clone();
            let taken = std::mem::replace(expr, Expr::Value(Value::Null.into()));
            let mut terms = flatten(taken, &op);
            if op == BinaryOperator::Or {
                terms = merge_equalities(terms);
            }
            *expr = balance(terms, &op);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The operands of a chain of `op` (through parentheses), in order, without recursion.
fn flatten(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut terms = Vec::new();
    let mut pending = vec![expr];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == *op => {
                pending.push(*right);
                pending.push(*left);
            }
            Expr::Nested(inner) if matches!(&*inner, Expr::BinaryOp { op: o, .. } if o == op) => pending.push(*inner),
            other => terms.push(other),
        }
    }
    terms
}

/// `terms` joined by `op` as a balanced tree. `terms` is never empty (a chain has two).
fn balance(mut terms: Vec<Expr>, op: &BinaryOperator) -> Expr {
    while terms.len() > 1 {
        let mut paired = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(left) = it.next() {
            paired.push(match it.next() {
                Some(right) => Expr::BinaryOp { left: Box::new(left), op: op.clone(), right: Box::new(right) },
                None => left,
            });
        }
        terms = paired;
    }
    terms.pop().unwrap_or(Expr::Value(Value::Boolean(false).into()))
}

/// Kinds of literal that may share an `IN` list: a column compared with numbers and with
/// strings in one chain keeps the comparisons apart, as DataFusion would coerce them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LiteralKind {
    Number,
    Text,
}

/// The literal kind of `e`, if it is a number (possibly negated) or a string literal.
fn literal_kind(e: &Expr) -> Option<LiteralKind> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(..) => Some(LiteralKind::Number),
            Value::SingleQuotedString(_) | Value::DoubleQuotedString(_) => Some(LiteralKind::Text),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus | UnaryOperator::Plus, expr } => {
            matches!(literal_kind(expr), Some(LiteralKind::Number)).then_some(LiteralKind::Number)
        }
        _ => None,
    }
}

/// Whether `e` names a column.
fn is_column(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

/// The column and values a disjunct tests: `col = lit`, `lit = col`, or `col IN (lits)`.
fn as_membership(term: Expr) -> Result<(Expr, LiteralKind, Vec<Expr>), Expr> {
    match term {
        Expr::BinaryOp { left, op: BinaryOperator::Eq, right } => {
            let kind = if is_column(&left) { literal_kind(&right) } else { None };
            if let Some(kind) = kind {
                return Ok((*left, kind, vec![*right]));
            }
            let kind = if is_column(&right) { literal_kind(&left) } else { None };
            match kind {
                Some(kind) => Ok((*right, kind, vec![*left])),
                None => Err(Expr::BinaryOp { left, op: BinaryOperator::Eq, right }),
            }
        }
        Expr::InList { expr, list, negated: false } if is_column(&expr) && !list.is_empty() => {
            let kind = literal_kind(&list[0]);
            match kind {
                Some(kind) if list.iter().all(|v| literal_kind(v) == Some(kind)) => Ok((*expr, kind, list)),
                _ => Err(Expr::InList { expr, list, negated: false }),
            }
        }
        other => Err(other),
    }
}

/// The disjuncts `terms` with every group of equalities on one column (and same-kind
/// literals) merged into one `IN` list at the place of the group's first term.
fn merge_equalities(terms: Vec<Expr>) -> Vec<Expr> {
    /// A disjunct, or a group of values of one column.
    enum Slot {
        Term(Expr),
        Group { column: Expr, values: Vec<Expr>, terms: usize },
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(terms.len());
    let mut groups: HashMap<(String, LiteralKind), usize> = HashMap::new();
    for term in terms {
        match as_membership(term) {
            Ok((column, kind, values)) => match groups.get(&(column.to_string(), kind)) {
                Some(&i) => {
                    if let Slot::Group { values: v, terms, .. } = &mut slots[i] {
                        v.extend(values);
                        *terms += 1;
                    }
                }
                None => {
                    groups.insert((column.to_string(), kind), slots.len());
                    slots.push(Slot::Group { column, values, terms: 1 });
                }
            },
            Err(term) => slots.push(Slot::Term(term)),
        }
    }
    slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Term(t) => t,
            Slot::Group { column, mut values, terms: 1 } if values.len() == 1 => {
                Expr::BinaryOp { left: Box::new(column), op: BinaryOperator::Eq, right: Box::new(values.remove(0)) }
            }
            Slot::Group { column, values, .. } => Expr::InList { expr: Box::new(column), list: values, negated: false },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParserBuilder;

    fn parse_expr(text: &str) -> Result<ExprWithAlias, ComputeError> {
        DFParserBuilder::new(text).build().and_then(|mut p| p.parse_expr()).map_err(|e| ComputeError::InvalidArgument(e.to_string()))
    }

    fn filter(text: &str, limits: ExprLimits) -> Result<String, ComputeError> {
        prepare_filter(text, limits, parse_expr).map(|e| e.expr.to_string())
    }

    fn or_chain(column: &str, n: usize) -> String {
        (0..n).map(|i| format!("{column} = {i}")).collect::<Vec<_>>().join(" OR ")
    }

    #[test]
    fn equalities_on_one_column_become_one_in_list() {
        let out = filter("a = 1 OR 2 = a OR b = 'x' OR a IN (3, 4) OR a = 'y' OR c > 1 OR b = 'z'", ExprLimits::default()).unwrap();
        assert_eq!(out, "a IN (1, 2, 3, 4) OR b IN ('x', 'z') OR a = 'y' OR c > 1");
        // A lone equality stays one; NOT IN and non-literal comparisons are left alone.
        assert_eq!(filter("a = 1 OR a NOT IN (2) OR a = b", ExprLimits::default()).unwrap(), "a = 1 OR a NOT IN (2) OR a = b");
    }

    #[test]
    fn long_chains_are_balanced_and_large_disjunctions_pass() {
        let limits = ExprLimits { max_bytes: 1 << 20, max_depth: 64 };
        let out = filter(&or_chain("id", 10_000), limits).unwrap();
        assert!(out.starts_with("id IN (0, 1, 2"), "{}", &out[..40]);
        let ands = (0..5_000).map(|i| format!("c{} > {i}", i % 7)).collect::<Vec<_>>().join(" AND ");
        filter(&ands, limits).expect("a 5,000-term AND chain is balanced to depth 14");
    }

    #[test]
    fn deep_chains_that_cannot_be_balanced_are_refused_without_overflowing() {
        let limits = ExprLimits { max_bytes: 1 << 20, max_depth: 256 };
        for text in [
            format!("a{}", " + 1".repeat(100_000)),
            format!("a{}", " IS NULL".repeat(100_000)),
            format!("a{}", "::int".repeat(100_000)),
        ] {
            let err = filter(&text, limits).unwrap_err().to_string();
            assert!(err.contains("limits/max_expr_depth"), "{err}");
        }
        let err = filter(&"a = 1 OR ".repeat(200_000), limits).unwrap_err().to_string();
        assert!(err.contains("limits/max_query_bytes"), "{err}");
    }
}
