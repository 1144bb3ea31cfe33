//! A structure-aware generator of filters and SQL over the test collection's schema: deep,
//! wide, mistyped, unicode, huge literals, and every operator and many functions DataFusion
//! parses, with a share of texts broken by a random edit so the parser's errors are reached
//! too.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Columns of the collection, and names that are not.
const COLUMNS: &[&str] = &["id", "category", "price", "tag", "in_stock", "vector", "nope", "\"Price\"", "docs.id", "\"ünïcödé\""];

const BINARY: &[&str] = &[
    "+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "OR", "LIKE", "NOT LIKE", "ILIKE", "||", "&", "|", "#", "<<",
    ">>", "~", "!~", "~*", "IS DISTINCT FROM", "IS NOT DISTINCT FROM", "@>", "<@", "SIMILAR TO",
];

const TYPES: &[&str] =
    &["INT", "BIGINT", "TINYINT", "DOUBLE", "FLOAT", "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP", "DECIMAL(10,2)", "DECIMAL(38,37)", "BYTEA", "INT[]"];

const FUNCTIONS: &[(&str, usize)] = &[
    ("abs", 1),
    ("sqrt", 1),
    ("ln", 1),
    ("exp", 1),
    ("power", 2),
    ("round", 2),
    ("floor", 1),
    ("lower", 1),
    ("upper", 1),
    ("length", 1),
    ("substr", 3),
    ("left", 2),
    ("right", 2),
    ("lpad", 3),
    ("repeat", 2),
    ("concat", 3),
    ("coalesce", 3),
    ("nullif", 2),
    ("regexp_like", 2),
    ("regexp_replace", 3),
    ("starts_with", 2),
    ("strpos", 2),
    ("md5", 1),
    ("sha256", 1),
    ("to_hex", 1),
    ("date_trunc", 2),
    ("to_timestamp", 1),
    ("make_array", 3),
    ("array_length", 1),
    ("greatest", 3),
    ("least", 2),
    ("random", 0),
    ("now", 0),
    ("arrow_typeof", 1),
    ("gcd", 2),
    ("factorial", 1),
    ("uuid", 0),
    ("no_such_function", 1),
];

const AGGREGATES: &[&str] =
    &["count(*)", "count(id)", "sum(price)", "avg(price)", "min(tag)", "max(category)", "approx_distinct(tag)", "array_agg(id)", "string_agg(tag, ',')", "stddev(price)", "median(price)", "bool_and(in_stock)"];

const STATEMENTS: &[&str] = &[
    "CREATE TABLE t (a INT)",
    "INSERT INTO docs VALUES (1)",
    "DELETE FROM docs",
    "UPDATE docs SET price = 0",
    "DROP TABLE docs",
    "SET datafusion.execution.batch_size = 0",
    "COPY docs TO '/tmp/grape-fuzz'",
    "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
    "SELECT * FROM '/etc/passwd'",
    "SELECT 1; SELECT 2",
    "",
    ";",
    "SHOW TABLES",
    "DESCRIBE docs",
    "PREPARE p AS SELECT 1",
];

/// The generator; `budget` bounds the size of what it builds.
pub struct Grammar<'a> {
    rng: &'a mut StdRng,
    budget: usize,
}

impl<'a> Grammar<'a> {
    /// A generator drawing from `rng`.
    pub fn new(rng: &'a mut StdRng) -> Self {
        Grammar { rng, budget: 0 }
    }

    /// A filter text: mostly boolean expressions, some anything.
    pub fn filter(&mut self) -> String {
        self.budget = self.rng.gen_range(1..60);
        let text = match self.rng.gen_range(0..20) {
            0 => self.wide("OR"),
            1 => self.wide("AND"),
            2 => self.deep(),
            _ => self.expr(0),
        };
        self.maybe_break(text)
    }

    /// A SQL text: queries of many shapes, statements that must be refused, broken text.
    pub fn sql(&mut self) -> String {
        self.budget = self.rng.gen_range(1..80);
        let text = match self.rng.gen_range(0..30) {
            0 => STATEMENTS.choose(self.rng).copied().unwrap_or("").to_string(),
            1 => format!("EXPLAIN {}", self.query(0)),
            2 => format!("{} UNION ALL {}", self.query(1), self.query(1)),
            3 => format!("SELECT count(*) FROM docs WHERE {}", self.wide("OR")),
            4 => format!("SELECT {} FROM docs", self.deep()),
            _ => self.query(0),
        };
        self.maybe_break(text)
    }

    fn query(&mut self, depth: usize) -> String {
        let from = match self.rng.gen_range(0..12) {
            0 if depth < 3 => format!("({}) AS s", self.query(depth + 1)),
            1 => format!("docs a JOIN docs b ON a.id = b.{}", self.column()),
            2 => format!("docs a, docs b WHERE a.category = b.category AND {}", self.expr(1)),
            3 => "nope".to_string(),
            4 => "docs a LEFT JOIN docs b USING (id)".to_string(),
            5 => "generate_series(1, 100000)".to_string(),
            6 => "(VALUES (1, 'a'), (2, 'b')) AS v(x, y)".to_string(),
            _ => "docs".to_string(),
        };
        let projection = match self.rng.gen_range(0..8) {
            0 => "*".to_string(),
            1 => AGGREGATES.choose(self.rng).copied().unwrap_or("count(*)").to_string(),
            2 => format!("{}, {}", self.column(), AGGREGATES.choose(self.rng).copied().unwrap_or("count(*)")),
            3 => format!("row_number() OVER (PARTITION BY category ORDER BY {}) AS r", self.expr(2)),
            4 => format!("DISTINCT {}", self.column()),
            _ => (0..self.rng.gen_range(1..4)).map(|_| self.expr(1)).collect::<Vec<_>>().join(", "),
        };
        let mut q = format!("SELECT {projection} FROM {from}");
        if self.rng.gen_bool(0.5) && !from.contains("WHERE") {
            q += &format!(" WHERE {}", self.expr(0));
        }
        if self.rng.gen_bool(0.2) {
            q += &format!(" GROUP BY {}", self.column());
            if self.rng.gen_bool(0.3) {
                q += &format!(" HAVING {}", AGGREGATES.choose(self.rng).copied().unwrap_or("count(*)"));
            }
        }
        if self.rng.gen_bool(0.3) {
            q += &format!(" ORDER BY {} {}", self.expr(2), ["ASC", "DESC", "NULLS FIRST", ""].choose(self.rng).copied().unwrap_or(""));
        }
        if self.rng.gen_bool(0.4) {
            let limit = [0u64, 1, 10, 1_000_000, u64::MAX].choose(self.rng).copied().unwrap_or(1);
            q += &format!(" LIMIT {limit}");
            if self.rng.gen_bool(0.3) {
                q += &format!(" OFFSET {}", self.rng.gen_range(0..5_000));
            }
        }
        q
    }

    fn column(&mut self) -> String {
        COLUMNS.choose(self.rng).copied().unwrap_or("id").to_string()
    }

    fn literal(&mut self) -> String {
        match self.rng.gen_range(0..24) {
            0 => "NULL".into(),
            1 => "TRUE".into(),
            2 => "FALSE".into(),
            3 => "99999999999999999999999999999999999999999".into(),
            4 => "-9223372036854775808".into(),
            5 => "18446744073709551615".into(),
            6 => "1e308".into(),
            7 => "-0.0".into(),
            8 => "'NaN'".into(),
            9 => "'ünïcödé ✓ 🍇'".into(),
            10 => "'it''s'".into(),
            11 => format!("'{}'", "x".repeat(self.rng.gen_range(0..100_000))),
            12 => "DATE '2024-02-30'".into(),
            13 => "TIMESTAMP '2024-01-01T00:00:00Z'".into(),
            14 => "INTERVAL '1 day'".into(),
            15 => "X'00ff'".into(),
            16 => "'\u{0}'".into(),
            17 => "[1, 2, 3]".into(),
            18 => format!("{}", self.rng.gen::<f64>() * 100.0),
            19 => "'%'".into(),
            20 => "'(a+)+$'".into(),
            _ => format!("{}", self.rng.gen_range(-20i64..20)),
        }
    }

    fn expr(&mut self, depth: usize) -> String {
        if self.budget == 0 || depth > 12 {
            return if self.rng.gen_bool(0.5) { self.column() } else { self.literal() };
        }
        self.budget -= 1;
        let d = depth + 1;
        match self.rng.gen_range(0..22) {
            0..=5 => {
                let op = BINARY.choose(self.rng).copied().unwrap_or("=");
                format!("{} {op} {}", self.expr(d), self.expr(d))
            }
            6 => format!("NOT {}", self.expr(d)),
            7 => format!("-{}", self.expr(d)),
            8 => format!("{} IS {}NULL", self.expr(d), if self.rng.gen_bool(0.5) { "NOT " } else { "" }),
            9 => format!("{} BETWEEN {} AND {}", self.expr(d), self.expr(d), self.expr(d)),
            10 => {
                let n = if self.rng.gen_bool(0.05) { 5_000 } else { self.rng.gen_range(0..6) };
                let items: Vec<String> = (0..n).map(|_| self.literal()).collect();
                format!("{} {}IN ({})", self.expr(d), if self.rng.gen_bool(0.3) { "NOT " } else { "" }, items.join(", "))
            }
            11 => format!("CASE WHEN {} THEN {} ELSE {} END", self.expr(d), self.expr(d), self.expr(d)),
            12 => format!("CAST({} AS {})", self.expr(d), TYPES.choose(self.rng).copied().unwrap_or("INT")),
            13 => format!("TRY_CAST({} AS {})", self.expr(d), TYPES.choose(self.rng).copied().unwrap_or("INT")),
            14 => format!("{}::{}", self.expr(d), TYPES.choose(self.rng).copied().unwrap_or("INT")),
            15 | 16 => {
                let (name, arity) = FUNCTIONS.choose(self.rng).copied().unwrap_or(("abs", 1));
                let args: Vec<String> = (0..arity).map(|_| self.expr(d)).collect();
                format!("{name}({})", args.join(", "))
            }
            17 => format!("({})", self.expr(d)),
            18 => format!("{} IN (SELECT id FROM docs WHERE {})", self.column(), self.expr(d)),
            19 => format!("EXISTS (SELECT 1 FROM docs WHERE {})", self.expr(d)),
            20 => format!("{}[{}]", self.column(), self.literal()),
            _ => format!("{} = {}", self.column(), self.literal()),
        }
    }

    /// A long chain of `op`: equalities on one column, or anything.
    fn wide(&mut self, op: &str) -> String {
        let n = *[10usize, 300, 3_000].choose(self.rng).unwrap_or(&10);
        let same_column = self.rng.gen_bool(0.5);
        let column = self.column();
        (0..n)
            .map(|_| if same_column { format!("{column} = {}", self.literal()) } else { format!("{} > {}", self.column(), self.literal()) })
            .collect::<Vec<_>>()
            .join(&format!(" {op} "))
    }

    /// A construct nested thousands deep.
    fn deep(&mut self) -> String {
        let n = *[100usize, 1_000, 5_000].choose(self.rng).unwrap_or(&100);
        match self.rng.gen_range(0..6) {
            0 => format!("{}id = 1{}", "(".repeat(n), ")".repeat(n)),
            1 => format!("{}TRUE", "NOT ".repeat(n)),
            2 => format!("price{} > 0", " + 1".repeat(n)),
            3 => format!("{}tag{} = 'a'", "lower(".repeat(n), ")".repeat(n)),
            4 => format!("tag{}", " IS NULL".repeat(n)),
            _ => format!("{}1{} = 1", "CASE WHEN TRUE THEN ".repeat(n), " END".repeat(n)),
        }
    }

    /// One text in ten gets a random edit: a character dropped, doubled or replaced.
    fn maybe_break(&mut self, text: String) -> String {
        if text.is_empty() || !self.rng.gen_bool(0.1) {
            return text;
        }
        let mut chars: Vec<char> = text.chars().collect();
        let at = self.rng.gen_range(0..chars.len());
        match self.rng.gen_range(0..3) {
            0 => {
                chars.remove(at);
            }
            1 => chars.insert(at, chars[at]),
            _ => chars[at] = *['(', ')', '\'', '"', ',', ';', '\u{feff}', '\\', '`'].choose(self.rng).unwrap_or(&'('),
        }
        chars.into_iter().collect()
    }
}
