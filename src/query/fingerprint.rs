//! Fingerprints: one stable 64-bit id per statement shape, and the shape itself as normalized
//! text.
//!
//! A statement is parsed by `sqlparser` for its dialect; the syntax tree is normalized (every
//! literal and placeholder becomes `?`, unquoted identifiers are lower-cased, an IN list or an
//! ARRAY of values keeps one value, VALUES rows that are all alike keep one row) and printed
//! back, which also settles keyword case, whitespace and comments. The fingerprint is the 64-bit
//! FNV-1a hash of that text, so it is the same across processes, machines and versions of the
//! package for as long as the normalized text is.
//!
//! Statements the parser rejects, and statements it is kept away from (see [`Limits`]), are
//! normalized from their tokens instead (see [`super::tokens`]): they still get a fingerprint,
//! never an error.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, InTarget, SetExpr, Statement, UnaryOperator, Value, ValueWithSpan, VisitMut, VisitorMut,
};
use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::tokens;

/// The SQL dialects the parser reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    /// PostgreSQL.
    #[default]
    Postgres,
    /// MySQL and MariaDB.
    MySql,
    /// SQLite.
    Sqlite,
    /// ANSI SQL with the common extensions.
    Generic,
}

impl Dialect {
    /// The dialect of a name: `postgres`, `mysql`, `sqlite` or `generic`.
    pub fn from_name(name: &str) -> Option<Dialect> {
        match name {
            "postgres" => Some(Dialect::Postgres),
            "mysql" => Some(Dialect::MySql),
            "sqlite" => Some(Dialect::Sqlite),
            "generic" => Some(Dialect::Generic),
            _ => None,
        }
    }

    fn parser_dialect(self) -> &'static dyn sqlparser::dialect::Dialect {
        match self {
            Dialect::Postgres => &PostgreSqlDialect {},
            Dialect::MySql => &MySqlDialect {},
            Dialect::Sqlite => &SQLiteDialect {},
            Dialect::Generic => &GenericDialect {},
        }
    }
}

/// Where the parser stops and the token-level normalization takes over.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Statements longer than this (in bytes) are not parsed: parsing 10 MB takes far longer
    /// than normalizing its tokens, and such statements are bulk loads whose shape the tokens
    /// give as well.
    pub max_parse_bytes: usize,
    /// The parser's recursion limit (nested subqueries, parentheses, expressions).
    pub recursion_limit: usize,
    /// Statements with a longer run of binary operators are not parsed: the parser builds such
    /// a run into a tree as tall as the run, which would then be walked recursively.
    pub max_operator_chain: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parse_bytes: 1 << 20,
            recursion_limit: 64,
            max_operator_chain: 2_000,
        }
    }
}

/// Statements up to this length are parsed without scanning them first: they cannot hold an
/// operator chain long enough to matter.
const SCAN_ABOVE_BYTES: usize = 2048;
/// Statements above this length, or with chains above this, are parsed and walked on a stack
/// segment of their own (see `with_big_stack`).
const BIG_STACK_ABOVE_BYTES: usize = 64 << 10;
const BIG_STACK_ABOVE_CHAIN: usize = 128;
const BIG_STACK_BYTES: usize = 64 << 20;

/// The fingerprint of one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The 64-bit FNV-1a hash of `normalized`.
    pub id: u64,
    /// The statement with every literal as `?`.
    pub normalized: String,
    /// Whether the parser read it (false: normalized from its tokens).
    pub parsed: bool,
    /// The statement's operation in upper case (`SELECT`, `INSERT`, ...), empty when unknown.
    pub operation: String,
}

/// Why a statement was not parsed, for the `parse-error` finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotParsed {
    /// The parser rejected it, with its message.
    Rejected(String),
    /// It was kept away from the parser: too long or too deep.
    TooComplex(String),
}

/// The 16 lowercase hex digits of a fingerprint id.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Parses `sql` within `limits` and runs `work` on the statements (on a stack segment of its
/// own for a large statement). When the statement is not parsed, says why, with the token scan
/// when one was made.
pub fn parse_with<T>(
    sql: &str,
    dialect: Dialect,
    limits: &Limits,
    work: impl FnOnce(Vec<Statement>) -> T,
) -> Result<T, (NotParsed, Option<tokens::Scan>)> {
    let mut big = sql.len() > BIG_STACK_ABOVE_BYTES;
    let mut scanned = None;
    if sql.len() > limits.max_parse_bytes {
        let reason = format!(
            "the statement is {} bytes long; statements above {} bytes are normalized from their tokens",
            sql.len(),
            limits.max_parse_bytes
        );
        return Err((NotParsed::TooComplex(reason), None));
    }
    if sql.len() > SCAN_ABOVE_BYTES {
        let scan = tokens::scan(sql, dialect);
        if scan.longest_chain > limits.max_operator_chain {
            let reason = format!(
                "the statement chains {} operators; above {} it is normalized from its tokens",
                scan.longest_chain, limits.max_operator_chain
            );
            return Err((NotParsed::TooComplex(reason), Some(scan)));
        }
        if scan.max_depth > limits.recursion_limit {
            let reason = format!(
                "the statement nests {} levels deep; above {} it is normalized from its tokens",
                scan.max_depth, limits.recursion_limit
            );
            return Err((NotParsed::TooComplex(reason), Some(scan)));
        }
        big |= scan.longest_chain > BIG_STACK_ABOVE_CHAIN;
        scanned = Some(scan);
    }
    let run = || -> Result<T, String> {
        let statements = Parser::new(dialect.parser_dialect())
            .with_recursion_limit(limits.recursion_limit)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| e.to_string())?;
        if statements.is_empty() {
            return Err("no statement".to_string());
        }
        Ok(work(statements))
    };
    let result = if big { with_big_stack(run) } else { run() };
    result.map_err(|message| (NotParsed::Rejected(message), scanned))
}

/// Parses `sql` and runs `inspect` on the statements, then normalizes and prints them; falls
/// back to the tokens when the statement is not parsed. Returns the fingerprint, what
/// `inspect` returned (`None` when not parsed), and why it was not parsed.
pub fn fingerprint_with<T>(
    sql: &str,
    dialect: Dialect,
    limits: &Limits,
    inspect: impl FnOnce(&[Statement]) -> T,
) -> (Fingerprint, Option<T>, Option<NotParsed>) {
    let parsed = parse_with(sql, dialect, limits, |mut statements| {
        let inspected = inspect(&statements);
        let _ = statements.visit(&mut Normalizer);
        let normalized = print(&statements);
        let operation = operation_of(&statements[0]);
        let id = fnv1a(normalized.as_bytes());
        (
            Fingerprint {
                id,
                normalized,
                parsed: true,
                operation,
            },
            inspected,
        )
    });
    match parsed {
        Ok((fingerprint, inspected)) => (fingerprint, Some(inspected), None),
        Err((why, scan)) => (from_tokens(sql, dialect, scan), None, Some(why)),
    }
}

/// The fingerprint of `sql` (see the module documentation).
pub fn fingerprint(sql: &str, dialect: Dialect, limits: &Limits) -> Fingerprint {
    fingerprint_with(sql, dialect, limits, |_| ()).0
}

/// Runs `f` on a fresh stack segment: for statements whose tree is large, so that walking,
/// printing and dropping it can never exhaust the caller's stack (a worker thread's is small).
fn with_big_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(BIG_STACK_BYTES, f)
}

/// The token-level fingerprint.
fn from_tokens(sql: &str, dialect: Dialect, scan: Option<tokens::Scan>) -> Fingerprint {
    let scan = scan.unwrap_or_else(|| tokens::scan(sql, dialect));
    let normalized = tokens::normalize(sql, &scan);
    let operation = normalized
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .filter(|w| !w.is_empty() && tokens::is_keyword(w))
        .unwrap_or("")
        .to_ascii_uppercase();
    Fingerprint {
        id: fnv1a(normalized.as_bytes()),
        normalized,
        parsed: false,
        operation,
    }
}

fn print(statements: &[Statement]) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{statement}");
    }
    text
}

fn operation_of(statement: &Statement) -> String {
    let op = match statement {
        Statement::Query(query) => match query.body.as_ref() {
            SetExpr::Insert(_) => "INSERT",
            SetExpr::Update(_) => "UPDATE",
            SetExpr::Delete(_) => "DELETE",
            SetExpr::Merge(_) => "MERGE",
            SetExpr::Values(_) => "VALUES",
            _ => "SELECT",
        },
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge(_) => "MERGE",
        other => {
            let text = other.to_string();
            let word: String = text
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            return word.to_ascii_uppercase();
        }
    };
    op.to_string()
}

fn placeholder() -> Value {
    Value::Placeholder("?".to_string())
}

fn is_value(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(_))
}

/// Keeps the first of `items` when all of them are alike.
fn collapse<T: PartialEq>(items: &mut Vec<T>) {
    if items.len() > 1 && items[1..].iter().all(|item| *item == items[0]) {
        items.truncate(1);
    }
}

/// The syntax-tree normalization (see the module documentation).
struct Normalizer;

impl VisitorMut for Normalizer {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if !matches!(&value.value, Value::Placeholder(p) if p == "?") {
            value.value = placeholder();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut sqlparser::ast::Ident) -> ControlFlow<()> {
        if ident.quote_style.is_none() && ident.value.bytes().any(|b| b.is_ascii_uppercase()) {
            ident.value.make_ascii_lowercase();
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr: inner,
            } if is_value(inner) => {
                *expr = Expr::value(placeholder());
            }
            Expr::In {
                target: InTarget::List(list),
                ..
            } => collapse(list),
            Expr::Array(array) => collapse(&mut array.elem),
            Expr::Tuple(items) if items.iter().all(is_value) => {}
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut sqlparser::ast::Query) -> ControlFlow<()> {
        if let SetExpr::Values(values) = query.body.as_mut() {
            if values.rows.len() > 1
                && values.rows[1..]
                    .iter()
                    .all(|row| row.content == values.rows[0].content)
            {
                values.rows.truncate(1);
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(sql: &str) -> Fingerprint {
        fingerprint(sql, Dialect::Postgres, &Limits::default())
    }

    fn same(a: &str, b: &str) {
        let (x, y) = (fp(a), fp(b));
        assert_eq!(x.normalized, y.normalized, "{a:?} vs {b:?}");
        assert_eq!(x.id, y.id);
    }

    fn different(a: &str, b: &str) {
        let (x, y) = (fp(a), fp(b));
        assert_ne!(
            x.id, y.id,
            "{a:?} and {b:?} should differ: {}",
            x.normalized
        );
    }

    #[test]
    fn normalized_text_of_a_parsed_statement() {
        let f = fp("select id, Name from Users where id = 42 and email = 'a@b.c' limit 10");
        assert!(f.parsed);
        assert_eq!(
            f.normalized,
            "SELECT id, name FROM users WHERE id = ? AND email = ? LIMIT ?"
        );
        assert_eq!(f.operation, "SELECT");
        assert_eq!(hex(f.id).len(), 16);
        assert_eq!(f.id, fnv1a(f.normalized.as_bytes()));
    }

    #[test]
    fn same_fingerprint_for_literals_whitespace_comments_case_lists_rows() {
        same(
            "SELECT * FROM t WHERE id = 1",
            "select *\n  from t -- comment\n where id = 99",
        );
        same(
            "SELECT * FROM t WHERE id = $1",
            "SELECT * FROM t WHERE id = 'x' /* c */",
        );
        same(
            "SELECT * FROM t WHERE id IN (1, 2, 3)",
            "SELECT * FROM t WHERE id IN ($1)",
        );
        same(
            "SELECT * FROM t WHERE id = ANY(ARRAY[1, 2])",
            "SELECT * FROM t WHERE id = ANY(ARRAY[5])",
        );
        same(
            "INSERT INTO t (a, b) VALUES (1, 2)",
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), (5, 'x')",
        );
        same(
            "SELECT * FROM t WHERE a = -1",
            "SELECT * FROM t WHERE a = 1",
        );
        same(
            "SELECT * FROM t WHERE a = TRUE",
            "SELECT * FROM t WHERE a = 0",
        );
    }

    #[test]
    fn different_fingerprints_for_different_shapes() {
        different(
            "SELECT * FROM t WHERE id = 1",
            "SELECT * FROM u WHERE id = 1",
        );
        different("SELECT a FROM t", "SELECT b FROM t");
        different("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1");
        different(
            "SELECT * FROM t WHERE a = 1 AND b = 2",
            "SELECT * FROM t WHERE a = 1 OR b = 2",
        );
        different(
            "SELECT * FROM t WHERE a IN (1, 2)",
            "SELECT * FROM t WHERE a IN (1, b)",
        );
        different("SELECT * FROM t", "SELECT * FROM t ORDER BY a");
    }

    #[test]
    fn every_dialect_parses_its_own_syntax() {
        let mysql = fingerprint(
            "SELECT `id` FROM `t` WHERE a = ? LIMIT 5, 10",
            Dialect::MySql,
            &Limits::default(),
        );
        assert!(mysql.parsed, "{mysql:?}");
        let sqlite = fingerprint(
            "SELECT id FROM t WHERE a = ?1",
            Dialect::Sqlite,
            &Limits::default(),
        );
        assert!(sqlite.parsed, "{sqlite:?}");
        let generic = fingerprint(
            "SELECT id FROM t WHERE a = :name",
            Dialect::Generic,
            &Limits::default(),
        );
        assert!(generic.parsed, "{generic:?}");
        assert_eq!(generic.normalized, "SELECT id FROM t WHERE a = ?");
    }

    #[test]
    fn rejected_statements_fall_back_to_tokens() {
        let (f, inspected, why) = fingerprint_with(
            "SELEC * FRM t WHERE id = 5",
            Dialect::Postgres,
            &Limits::default(),
            |_| (),
        );
        assert!(!f.parsed);
        assert!(inspected.is_none());
        assert!(matches!(why, Some(NotParsed::Rejected(_))));
        assert_eq!(f.normalized, "selec * frm t WHERE id = ?");
        assert_eq!(fp("").normalized, "");
        assert!(!fp("").parsed);
    }

    #[test]
    fn hostile_input_returns() {
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let f = fp(&deep);
        assert!(!f.parsed);
        let deep_query = format!(
            "SELECT * FROM t WHERE a IN {} 1 {}",
            "(SELECT a FROM t WHERE a IN ".repeat(200),
            ")".repeat(200)
        );
        assert!(!fp(&deep_query).parsed);
        let chain = format!("SELECT 1{} FROM t", " + 1".repeat(100_000));
        assert!(!fp(&chain).parsed);
        let medium_chain = format!("SELECT * FROM t WHERE a = 1{}", " OR a = 1".repeat(500));
        assert!(fp(&medium_chain).parsed);
        let nested_not = format!("SELECT * FROM t WHERE {} a", "NOT ".repeat(10_000));
        let _ = fp(&nested_not);
        let mut big = String::from("INSERT INTO t (a, b) VALUES (1, 'x')");
        while big.len() < 10 << 20 {
            big.push_str(", (123456, 'some text here')");
        }
        let f = fp(&big);
        assert!(!f.parsed);
        assert_eq!(f.normalized, "INSERT INTO t (a, b) VALUES (?, ?)");
    }
}
