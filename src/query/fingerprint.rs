//! Fingerprints: one stable 64-bit id per statement shape, and the shape itself as normalized
//! text.
//!
//! A statement's tokens are read by the scanner of [`super::tokens`] for its dialect (strings,
//! quoted identifiers, comments, dollar quotes, placeholders and operators as that dialect
//! writes them) and normalized: every literal and placeholder becomes `?`, comments and
//! whitespace go, reserved words are upper case and unquoted identifiers lower case, an IN list
//! or an ARRAY of values keeps one value, VALUES rows that are all alike keep one row. The
//! fingerprint is the 64-bit FNV-1a hash of that text, so it is the same across processes,
//! machines and versions of the package for as long as the normalized text is.
//!
//! Why tokens and not the syntax tree: on the benchmark corpus of OLTP statements (see
//! `benches/query.rs` and the README), sqlparser's parse alone costs about twice the time
//! allowed for a first-sight fingerprint, and its lexer alone more than half of it; the scanner
//! with the normalization costs a fraction. A statement's shape is its token sequence once
//! literals, lists and rows are folded, which the tree printed back gave no more precisely.
//! The scanner is checked against sqlparser's lexer: [`normalize_lexed`] gives the same text
//! from the lexer's tokens, and the tests compare the two on the whole corpus. The full parse
//! stays for what needs the tree, the anti-pattern rules ([`fingerprint_with`] runs both).
//!
//! The scanner never fails and never recurses: every statement gets a fingerprint, whatever its
//! size, depth or syntax, and never an error.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sqlparser::ast::Statement;
use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::tokens::{self, Normalized, TokenKind};
use crate::common::error::panic_message;

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

    /// The dialect of a code: 0 postgres, 1 mysql, 2 sqlite, 3 generic (the order of
    /// [`Dialect::NAMES`]).
    pub fn from_code(code: u32) -> Option<Dialect> {
        Self::NAMES
            .get(code as usize)
            .and_then(|name| Self::from_name(name))
    }

    /// The dialect names, in the order of their codes.
    pub const NAMES: [&'static str; 4] = ["postgres", "mysql", "sqlite", "generic"];

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
    /// Statements longer than this (in bytes) are not parsed (their fingerprint never needs the
    /// parser): parsing 10 MB takes far longer than scanning it, and such statements are bulk
    /// loads that no rule is about.
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
    // The parser has panicked on malformed input in past versions (and the rules walk its tree):
    // a panic here would unwind into Node and abort the service whose queries are instrumented,
    // so it is caught and the statement treated as one the parser rejected.
    let guarded = || {
        catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
            Err(format!(
                "the SQL parser failed on this statement ({})",
                panic_message(&*panic)
            ))
        })
    };
    let result = if big {
        with_big_stack(guarded)
    } else {
        guarded()
    };
    result.map_err(|message| (NotParsed::Rejected(message), scanned))
}

/// The fingerprint of `sql`, and `inspect` run on its parsed statements: `None` when they are
/// not parsed, with why.
pub fn fingerprint_with<T>(
    sql: &str,
    dialect: Dialect,
    limits: &Limits,
    inspect: impl FnOnce(&[Statement]) -> T,
) -> (Fingerprint, Option<T>, Option<NotParsed>) {
    let fingerprint = fingerprint(sql, dialect);
    match parse_with(sql, dialect, limits, |statements| inspect(&statements)) {
        Ok(inspected) => (fingerprint, Some(inspected), None),
        Err((why, _)) => (fingerprint, None, Some(why)),
    }
}

/// The fingerprint of `sql` (see the module documentation).
pub fn fingerprint(sql: &str, dialect: Dialect) -> Fingerprint {
    let normalized = scan_normalized(sql, dialect);
    Fingerprint {
        id: fnv1a(normalized.text.as_bytes()),
        normalized: normalized.text,
        operation: normalized.operation,
    }
}

/// Runs `f` on a fresh stack segment: for statements whose tree is large, so that walking,
/// printing and dropping it can never exhaust the caller's stack (a worker thread's is small).
fn with_big_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::grow(BIG_STACK_BYTES, f)
}

/// The normalization of the token scanner's tokens.
fn scan_normalized(sql: &str, dialect: Dialect) -> Normalized {
    let scan = tokens::scan(sql, dialect);
    tokens::normalize_pieces(
        scan.tokens
            .iter()
            .map(|t| (t.kind, Cow::Borrowed(&sql[t.start..t.end]))),
    )
}

/// The normalization of sqlparser's lexer's tokens, or `None` when the lexer rejects `sql`: the
/// same text as the fingerprint's for what both read alike (the tests compare them), at several
/// times the cost (`benches/query.rs` measures both).
pub fn normalize_lexed(sql: &str, dialect: Dialect) -> Option<Normalized> {
    let lexed = Tokenizer::new(dialect.parser_dialect(), sql)
        .with_unescape(false)
        .tokenize_with_location()
        .ok()?;
    Some(tokens::normalize_pieces(pieces(&lexed)))
}

/// The lexer's tokens as the normalization's pieces: whitespace and comments left out, a
/// `:name` or `@name` written as one placeholder.
fn pieces(lexed: &[TokenWithSpan]) -> impl Iterator<Item = (TokenKind, Cow<'_, str>)> {
    let mut i = 0;
    std::iter::from_fn(move || loop {
        let token = &lexed.get(i)?.token;
        i += 1;
        let piece = match token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) if w.quote_style.is_none() => {
                if w.value.starts_with(['@', ':', '$']) && w.value.len() > 1 {
                    (TokenKind::Placeholder, Cow::Borrowed("?"))
                } else {
                    (TokenKind::Word, Cow::Borrowed(w.value.as_str()))
                }
            }
            Token::Word(w) => (TokenKind::QuotedIdent, Cow::Owned(w.to_string())),
            Token::Colon | Token::AtSign
                if matches!(lexed.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none())
                    && !matches!(
                        i.checked_sub(2).map(|j| &lexed[j].token),
                        Some(Token::Colon | Token::DoubleColon)
                    ) =>
            {
                i += 1;
                (TokenKind::Placeholder, Cow::Borrowed("?"))
            }
            Token::Placeholder(_) | Token::Question => (TokenKind::Placeholder, Cow::Borrowed("?")),
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::CopyData { .. } => (TokenKind::Literal, Cow::Borrowed("?")),
            other => (TokenKind::Punct, punct(other)),
        };
        return Some(piece);
    })
}

/// The text of a punctuation or operator token (without formatting it, for the common ones).
fn punct(token: &Token) -> Cow<'static, str> {
    Cow::Borrowed(match token {
        Token::Comma => ",",
        Token::Eq => "=",
        Token::Neq => "<>",
        Token::Lt => "<",
        Token::Gt => ">",
        Token::LtEq => "<=",
        Token::GtEq => ">=",
        Token::Plus => "+",
        Token::Minus => "-",
        Token::Mul => "*",
        Token::Div => "/",
        Token::Mod => "%",
        Token::StringConcat => "||",
        Token::LParen => "(",
        Token::RParen => ")",
        Token::Period => ".",
        Token::Colon => ":",
        Token::DoubleColon => "::",
        Token::SemiColon => ";",
        Token::LBracket => "[",
        Token::RBracket => "]",
        Token::Whitespace(Whitespace::Space) => " ",
        other => return Cow::Owned(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(sql: &str) -> Fingerprint {
        fingerprint(sql, Dialect::Postgres)
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

    fn parses(sql: &str) -> bool {
        parse_with(sql, Dialect::Postgres, &Limits::default(), |_| ()).is_ok()
    }

    #[test]
    fn normalized_text_of_a_statement() {
        let f = fp("select id, Name from Users where id = 42 and email = 'a@b.c' limit 10");
        assert_eq!(
            f.normalized,
            "SELECT id, name FROM users WHERE id = ? AND email = ? LIMIT ?"
        );
        assert_eq!(f.operation, "SELECT");
        assert_eq!(hex(f.id).len(), 16);
        assert_eq!(f.id, fnv1a(f.normalized.as_bytes()));
        let f = fp("WITH recent AS (SELECT id FROM t WHERE a > 5) UPDATE u SET b = 1 FROM recent");
        assert_eq!(f.operation, "UPDATE");
        assert_eq!(fp("vacuum t").operation, "VACUUM");
        assert_eq!(fp("users").operation, "");
        assert_eq!(
            fp("SELECT x::int, \"Q\".\"Col\" FROM t WHERE y IS NOT NULL AND z = NULL").normalized,
            "SELECT x::int, \"Q\".\"Col\" FROM t WHERE y IS NOT NULL AND z = ?"
        );
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
            "SELECT * FROM t WHERE id = E'it\\'s' AND b = $$x$$ AND c = B'01'",
            "SELECT * FROM t WHERE id = ? AND b = ? AND c = ?",
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
        same(
            "SELECT * FROM t WHERE a != 1",
            "SELECT * FROM t WHERE a <> 1",
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
        different("SELECT a - 1 FROM t", "SELECT a + 1 FROM t");
        different(
            "SELECT * FROM t WHERE a IS NULL",
            "SELECT * FROM t WHERE a IS NOT NULL",
        );
        different("SELECT \"A\" FROM t", "SELECT a FROM t");
        different(
            "SELECT * FROM t WHERE a = 1 AND (b = 2 OR c = 3)",
            "SELECT * FROM t WHERE (a = 1 AND b = 2) OR c = 3",
        );
    }

    /// The fingerprint's text, checked against the one from sqlparser's lexer.
    fn checked(sql: &str, dialect: Dialect) -> String {
        let f = fingerprint(sql, dialect);
        let lexed = normalize_lexed(sql, dialect).expect("the lexer reads it");
        assert_eq!(f.normalized, lexed.text, "{sql}");
        assert_eq!(f.operation, lexed.operation, "{sql}");
        f.normalized
    }

    #[test]
    fn every_dialect_reads_its_own_syntax() {
        assert_eq!(
            checked(
                "SELECT `id` FROM `t` WHERE a = ? AND b = \"x\" # note\n LIMIT 5, 10",
                Dialect::MySql
            ),
            "SELECT `id` FROM `t` WHERE a = ? AND b = ? LIMIT ?, ?"
        );
        assert_eq!(
            checked(
                "SELECT id FROM t WHERE a = ?1 AND b = :b AND c = @c",
                Dialect::Sqlite
            ),
            "SELECT id FROM t WHERE a = ? AND b = ? AND c = ?"
        );
        assert_eq!(
            checked("SELECT id FROM t WHERE a = :name", Dialect::Generic),
            "SELECT id FROM t WHERE a = ?"
        );
        assert_eq!(
            checked(
                "SELECT data->>'k', a::text FROM t WHERE tags @> $1 AND b = $name AND c = $$x$$",
                Dialect::Postgres
            ),
            "SELECT data ->> ?, a::text FROM t WHERE tags @> ? AND b = ? AND c = ?"
        );
        assert_eq!(
            checked(
                "select E'it\\'s', U&'x', X'ff', B'01', 1.5e3, .5 from \"T\" /* a /* nested */ c */",
                Dialect::Postgres
            ),
            "SELECT ?, ?, ?, ?, ?, ? FROM \"T\""
        );
    }

    #[test]
    fn the_lexer_and_the_scanner_agree_on_the_corpus() {
        let corpus = include_str!("../../benches/fixtures/oltp.sql");
        let mut count = 0;
        for sql in corpus
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
        {
            checked(sql, Dialect::Postgres);
            count += 1;
        }
        assert!(count >= 200);
    }

    #[test]
    fn rejected_statements_still_get_a_fingerprint() {
        let (f, inspected, why) = fingerprint_with(
            "SELEC * FRM t WHERE id = 5",
            Dialect::Postgres,
            &Limits::default(),
            |_| (),
        );
        assert!(inspected.is_none());
        assert!(matches!(why, Some(NotParsed::Rejected(_))));
        assert_eq!(f.normalized, "selec * frm t WHERE id = ?");
        assert_eq!(f.operation, "");
        // the lexer rejects an unterminated string; the scanner reads it
        let f = fp("SELECT * FROM t WHERE a = 'open");
        assert!(normalize_lexed("SELECT * FROM t WHERE a = 'open", Dialect::Postgres).is_none());
        assert_eq!(f.normalized, "SELECT * FROM t WHERE a = ?");
        assert_eq!(fp("").normalized, "");
        assert!(!parses(""));
    }

    #[test]
    fn a_panic_in_the_parser_or_the_rules_is_a_rejection_not_an_abort() {
        for big in [false, true] {
            // a statement big enough to be parsed on a stack segment of its own, or not
            let sql = if big {
                format!("SELECT 1 FROM t WHERE a = '{}'", "x".repeat(70 << 10))
            } else {
                "SELECT 1".to_string()
            };
            let outcome = parse_with(&sql, Dialect::Postgres, &Limits::default(), |_| {
                panic!("a rule met a tree it did not expect")
            });
            match outcome {
                Err((NotParsed::Rejected(why), _)) => assert!(
                    why.contains("the SQL parser failed")
                        && why.contains("a rule met a tree it did not expect"),
                    "{why}"
                ),
                _ => panic!("the panic was not caught (big: {big})"),
            }
        }
        // the thread goes on parsing
        assert!(parses("SELECT 1"));
    }

    #[test]
    fn hostile_input_returns() {
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let f = fp(&deep);
        assert_eq!(f.normalized.len(), "SELECT ".len() + 20_001);
        assert!(!parses(&deep));
        let deep_query = format!(
            "SELECT * FROM t WHERE a IN {} 1 {}",
            "(SELECT a FROM t WHERE a IN ".repeat(200),
            ")".repeat(200)
        );
        let _ = fp(&deep_query);
        assert!(!parses(&deep_query));
        let chain = format!("SELECT 1{} FROM t", " + 1".repeat(100_000));
        assert_eq!(fp(&chain).normalized.matches('+').count(), 100_000);
        assert!(!parses(&chain));
        let medium_chain = format!("SELECT * FROM t WHERE a = 1{}", " OR a = 1".repeat(500));
        assert!(parses(&medium_chain));
        let nested_not = format!("SELECT * FROM t WHERE {} a", "NOT ".repeat(10_000));
        let _ = fp(&nested_not);
        let _ = parses(&nested_not);
        let mut big = String::from("INSERT INTO t (a, b) VALUES (1, 'x')");
        while big.len() < 10 << 20 {
            big.push_str(", (123456, 'some text here')");
        }
        let f = fp(&big);
        assert_eq!(f.normalized, "INSERT INTO t (a, b) VALUES (?, ?)");
        assert!(!parses(&big));
    }
}
