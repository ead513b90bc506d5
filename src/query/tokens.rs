//! Token-level SQL: a small iterative scanner that every statement can go through, whatever its
//! size, depth or syntax.
//!
//! It serves two purposes. Every fingerprint comes from it: [`normalize_pieces`] gives the
//! normalized text from the tokens (of [`scan`], or of sqlparser's lexer, which the tests
//! compare): literals and placeholders become `?`, comments and extra whitespace go, keywords
//! are upper case and unquoted identifiers lower case, and IN lists, ARRAYs of values and VALUES
//! rows of values collapse to one. And before the real parser runs, [`scan`] measures a
//! statement (paren depth, the longest chain of binary operators, the token count) so that a
//! statement whose syntax tree would be too deep to walk safely is kept away from the parser.
//! Nothing here recurses, so 10 MB of SQL or 10,000 nested parentheses cost time linear in their
//! length and no stack.

use std::borrow::Cow;

use super::fingerprint::Dialect;

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or an unquoted identifier.
    Word,
    /// An identifier in double quotes, backticks or brackets.
    QuotedIdent,
    /// A string, number, hex or bit literal.
    Literal,
    /// A bind parameter: `$1`, `?`, `?1`, `:name`, `@name`, `$name`.
    Placeholder,
    /// Punctuation or an operator (`(`, `,`, `=`, `<>`, `::`, ...).
    Punct,
}

/// One token: its kind and its byte range in the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
}

/// A scanned statement: its tokens and the measures that decide whether the parser may see it.
#[derive(Debug, Default)]
pub struct Scan {
    /// The tokens, comments and whitespace left out.
    pub tokens: Vec<Token>,
    /// The deepest nesting of parentheses and brackets.
    pub max_depth: usize,
    /// The longest run of binary operators between two separators (`,`, `;`, parentheses) at
    /// one depth: a parser builds such a run into a left-deep tree of that height.
    pub longest_chain: usize,
}

/// Words that join two operands, as the parser sees them when building a chain.
const OPERATOR_WORDS: &[&str] = &[
    "AND", "BETWEEN", "COLLATE", "DIV", "ILIKE", "IN", "IS", "LIKE", "MOD", "NOT", "OR", "REGEXP",
    "RLIKE", "SIMILAR", "XOR",
];

/// The [`OPERATOR_WORDS`] packed (see [`pack`]).
const OPERATOR_CODES: [u128; OPERATOR_WORDS.len()] = {
    let mut codes = [0; OPERATOR_WORDS.len()];
    let mut i = 0;
    while i < OPERATOR_WORDS.len() {
        codes[i] = pack(OPERATOR_WORDS[i].as_bytes());
        i += 1;
    }
    codes
};

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_operator_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
    )
}

/// The end of a quoted run starting at `start` (on the opening quote), with `close` as the
/// closing byte, a doubled `close` as an escaped one, and backslash escapes when `backslash`.
/// An unterminated run ends at the end of the text.
fn quoted_end(bytes: &[u8], start: usize, close: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
            continue;
        }
        if b == close {
            if i + 1 < bytes.len() && bytes[i + 1] == close {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The end of a PostgreSQL dollar-quoted string starting at `start` (on the first `$`), or
/// `None` when the text at `start` is not a dollar-quote opener.
fn dollar_quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
    {
        i += 1;
    }
    if i >= bytes.len() || bytes[i] != b'$' {
        return None;
    }
    if i > start + 1 && bytes[start + 1].is_ascii_digit() {
        return None; // `$1$`: not a tag
    }
    let tag = &bytes[start..=i];
    let body = i + 1;
    let mut j = body;
    while j + tag.len() <= bytes.len() {
        if bytes[j] == b'$' && &bytes[j..j + tag.len()] == tag {
            return Some(j + tag.len());
        }
        j += 1;
    }
    Some(bytes.len())
}

/// Tokenizes `sql` for `dialect` and measures it. Linear in the length, no recursion.
pub fn scan(sql: &str, dialect: Dialect) -> Scan {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len() / 4 + 4);
    // operator counts of the open groups, the outermost first
    let mut chains: Vec<usize> = vec![0];
    let mut longest_chain = 0;
    let mut max_depth = 0;
    let mysql = dialect == Dialect::MySql;
    let postgres = dialect == Dialect::Postgres;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if b == b'-' && bytes.get(i + 1) == Some(&b'-') || (mysql && b == b'#') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            // PostgreSQL nests block comments; the others end at the first `*/`.
            let mut depth = 1;
            i += 2;
            while i < bytes.len() && depth > 0 {
                if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                } else if postgres && bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            continue;
        } else if b == b'\'' {
            i = quoted_end(bytes, i, b'\'', mysql);
            kind = TokenKind::Literal;
        } else if b == b'"' {
            i = quoted_end(bytes, i, b'"', mysql);
            kind = if mysql {
                TokenKind::Literal
            } else {
                TokenKind::QuotedIdent
            };
        } else if b == b'`' && !postgres {
            i = quoted_end(bytes, i, b'`', false);
            kind = TokenKind::QuotedIdent;
        } else if b == b'[' && dialect == Dialect::Sqlite {
            i = quoted_end(bytes, i, b']', false);
            kind = TokenKind::QuotedIdent;
        } else if b.is_ascii_digit()
            || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            if b == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
                i += 2;
                while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                    i += 1;
                }
            } else {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                    let mut j = i + 1;
                    if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j].is_ascii_digit() {
                        i = j;
                        while i < bytes.len() && bytes[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
            }
            kind = TokenKind::Literal;
        } else if is_word_start(b) {
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            // a string prefix: E'..', N'..', X'..', B'..', U&'..'
            let word = &bytes[start..i];
            if i < bytes.len()
                && bytes[i] == b'\''
                && word.len() == 1
                && b"eEnNxXbB".contains(&word[0])
            {
                let backslash = mysql || word[0] == b'e' || word[0] == b'E';
                i = quoted_end(bytes, i, b'\'', backslash);
                kind = TokenKind::Literal;
            } else if word.eq_ignore_ascii_case(b"u")
                && bytes.get(i) == Some(&b'&')
                && bytes.get(i + 1) == Some(&b'\'')
            {
                i = quoted_end(bytes, i + 1, b'\'', false);
                kind = TokenKind::Literal;
            } else {
                kind = TokenKind::Word;
            }
        } else if b == b'$' {
            if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                kind = TokenKind::Placeholder;
            } else if let Some(end) = dollar_quoted_end(bytes, i).filter(|_| !mysql) {
                i = end;
                kind = TokenKind::Literal;
            } else {
                i += 1;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                kind = if i > start + 1 {
                    TokenKind::Placeholder
                } else {
                    TokenKind::Punct
                };
            }
        } else if b == b'?' && !bytes.get(i + 1).is_some_and(|c| matches!(c, b'|' | b'&')) {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            kind = TokenKind::Placeholder;
        } else if (b == b':' || b == b'@')
            && bytes.get(i + 1).is_some_and(|&c| is_word_start(c))
            && !(i > 0 && bytes[i - 1] == b':')
        {
            i += 1;
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            kind = TokenKind::Placeholder;
        } else if b == b':' && bytes.get(i + 1) == Some(&b':') {
            i += 2;
            kind = TokenKind::Punct;
        } else if is_operator_byte(b) {
            while i < bytes.len()
                && is_operator_byte(bytes[i])
                && !(bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-'))
                && !(bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*'))
            {
                i += 1;
            }
            kind = TokenKind::Punct;
        } else {
            // one byte of punctuation (or one character we do not know)
            i += 1;
            while i < bytes.len() && !sql.is_char_boundary(i) {
                i += 1;
            }
            kind = TokenKind::Punct;
        }
        let token = Token {
            kind,
            start,
            end: i,
        };
        match (kind, &bytes[start..i]) {
            (TokenKind::Punct, b"(" | b"[") => {
                chains.push(0);
                max_depth = max_depth.max(chains.len() - 1);
            }
            (TokenKind::Punct, b")" | b"]") if chains.len() > 1 => {
                chains.pop();
            }
            (TokenKind::Punct, b")" | b"]") => {}
            (TokenKind::Punct, b"," | b";") => {
                *chains.last_mut().unwrap_or(&mut 0) = 0;
            }
            (TokenKind::Punct, b"." | b"$") => {}
            (TokenKind::Punct, _) => bump(&mut chains, &mut longest_chain),
            (TokenKind::Word, word)
                if (2..=7).contains(&word.len())
                    && OPERATOR_CODES.binary_search(&pack(word)).is_ok() =>
            {
                bump(&mut chains, &mut longest_chain);
            }
            _ => {}
        }
        tokens.push(token);
    }
    Scan {
        tokens,
        max_depth,
        longest_chain,
    }
}

fn bump(chains: &mut [usize], longest: &mut usize) {
    if let Some(run) = chains.last_mut() {
        *run += 1;
        *longest = (*longest).max(*run);
    }
}

/// The words written in upper case by the token-level normalization: the reserved words of
/// SQL statements. Words that are keywords only in some positions (`name`, `id`, `key`...) are
/// left out, since at token level they are usually column names. Sorted.
const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CALL",
    "CASE",
    "CAST",
    "COMMIT",
    "CONFLICT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "DUPLICATE",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "FETCH",
    "FIRST",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IGNORE",
    "ILIKE",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "NOT",
    "NOTHING",
    "NULLS",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "RECURSIVE",
    "REPLACE",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SHARE",
    "SKIP",
    "TABLE",
    "THEN",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUE",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// `word` in upper case, packed big-endian into a `u128` (zero padded), so that the order of
/// the codes of words of at most 16 bytes is the order of the words.
const fn pack(word: &[u8]) -> u128 {
    let mut code = 0u128;
    let mut i = 0;
    while i < 16 {
        code <<= 8;
        if i < word.len() {
            code |= word[i].to_ascii_uppercase() as u128;
        }
        i += 1;
    }
    code
}

/// The [`KEYWORDS`] packed: a lookup is one binary search over integers.
const KEYWORD_CODES: [u128; KEYWORDS.len()] = {
    let mut codes = [0; KEYWORDS.len()];
    let mut i = 0;
    while i < KEYWORDS.len() {
        codes[i] = pack(KEYWORDS[i].as_bytes());
        i += 1;
    }
    codes
};

/// Whether `word` (any case) is one of the reserved words the normalization upper-cases.
pub fn is_keyword(word: &str) -> bool {
    let bytes = word.as_bytes();
    (2..=16).contains(&bytes.len()) && KEYWORD_CODES.binary_search(&pack(bytes)).is_ok()
}

/// Literal words: they are values, so they become `?` like any literal.
fn is_literal_word(word: &str) -> bool {
    word.eq_ignore_ascii_case("true")
        || word.eq_ignore_ascii_case("false")
        || word.eq_ignore_ascii_case("null")
}

/// The normalized text of a statement from its tokens alone (see the module documentation).
pub fn normalize(sql: &str, scan: &Scan) -> String {
    normalize_pieces(
        scan.tokens
            .iter()
            .map(|t| (t.kind, Cow::Borrowed(&sql[t.start..t.end]))),
    )
    .text
}

/// A normalized statement: its text and its operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// The normalized text.
    pub text: String,
    /// The statement's operation in upper case (`SELECT`, `INSERT`, ...; the main statement's
    /// after `WITH`), empty when the first word is not a statement verb.
    pub operation: String,
}

/// Words that begin statements, beside the [`KEYWORDS`], for the operation.
const VERBS: &[&str] = &[
    "ANALYZE",
    "COPY",
    "DEALLOCATE",
    "DECLARE",
    "DESCRIBE",
    "EXECUTE",
    "GRANT",
    "LISTEN",
    "MERGE",
    "NOTIFY",
    "PREPARE",
    "RELEASE",
    "RESET",
    "REVOKE",
    "SHOW",
    "START",
    "UPSERT",
    "VACUUM",
];

/// The statements a `WITH` can lead to.
const MAIN_VERBS: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES"];

/// The normalization of any token stream (this module's scanner or the SQL parser's lexer):
/// `pieces` are the tokens in order, comments and whitespace left out, each with its kind and
/// its text as written.
pub fn normalize_pieces<'a>(pieces: impl Iterator<Item = (TokenKind, Cow<'a, str>)>) -> Normalized {
    let mut out: Vec<Cow<'a, str>> = Vec::with_capacity(pieces.size_hint().0.min(1 << 16));
    // For each open group in `out`: the index of its `(` and whether the word before it is `IN`
    // or it is a VALUES row (the first row after VALUES, or a row following one).
    let mut groups: Vec<(usize, Opener)> = Vec::new();
    // The first VALUES row of the current list (its range in `out`) while `out` ends with a row
    // of that list.
    let mut values_row: Option<(usize, usize)> = None;
    // The operation: the first word, or after `WITH` the first statement verb at its depth.
    let mut operation: Option<Cow<'static, str>> = None;
    let mut with_depth: Option<usize> = None;
    for (kind, text) in pieces {
        match kind {
            TokenKind::Literal | TokenKind::Placeholder => {
                push_value(&mut out);
            }
            TokenKind::Word if is_literal_word(&text) && !null_after_is(&text, &out) => {
                push_value(&mut out)
            }
            TokenKind::Word => {
                // (a literal word here is the NULL of IS NULL)
                let keyword = is_keyword(&text) || is_literal_word(&text);
                let cased = if keyword {
                    if text.bytes().any(|b| b.is_ascii_lowercase()) {
                        Cow::Owned(text.to_ascii_uppercase())
                    } else {
                        text
                    }
                } else if text.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(text.to_ascii_lowercase())
                } else {
                    text
                };
                if operation.is_none() {
                    operation = Some(if keyword || is_verb(&cased) {
                        Cow::Owned(cased.to_ascii_uppercase())
                    } else {
                        Cow::Borrowed("")
                    });
                    if cased == "WITH" {
                        with_depth = Some(groups.len());
                    }
                } else if with_depth == Some(groups.len()) && MAIN_VERBS.contains(&cased.as_ref()) {
                    operation = Some(Cow::Owned(cased.to_string()));
                    with_depth = None;
                }
                out.push(cased);
            }
            TokenKind::QuotedIdent => {
                operation.get_or_insert(Cow::Borrowed(""));
                out.push(text)
            }
            TokenKind::Punct => match text.as_ref() {
                "(" | "[" => {
                    let before = out.last().map(|t| t.as_ref());
                    let opener = if text == "[" {
                        if before == Some("ARRAY") {
                            Opener::In
                        } else {
                            Opener::Other
                        }
                    } else if before == Some("IN") {
                        Opener::In
                    } else if before == Some("VALUES") || before == Some("VALUE") {
                        values_row = None;
                        Opener::FirstRow
                    } else if before == Some(",")
                        && values_row.is_some_and(|(_, end)| end == out.len() - 1)
                    {
                        Opener::NextRow
                    } else {
                        Opener::Other
                    };
                    groups.push((out.len(), opener));
                    out.push(text);
                }
                ")" | "]" => {
                    out.push(text);
                    let Some((open, opener)) = groups.pop() else {
                        continue;
                    };
                    match opener {
                        Opener::In => collapse_list(&mut out, open),
                        Opener::FirstRow => values_row = Some((open, out.len())),
                        Opener::NextRow => {
                            if let Some((first_start, first_end)) = values_row {
                                let row = &out[open..];
                                if row == &out[first_start..first_end] {
                                    // the same row again: drop it and its comma
                                    out.truncate(open - 1);
                                    values_row = Some((first_start, first_end));
                                }
                            }
                        }
                        Opener::Other => {}
                    }
                }
                // the same operator in every dialect, written as the parser prints it
                "!=" => out.push(Cow::Borrowed("<>")),
                _ => out.push(text),
            },
        }
    }
    Normalized {
        text: join(&out),
        operation: operation.map(Cow::into_owned).unwrap_or_default(),
    }
}

fn is_verb(word: &str) -> bool {
    VERBS.iter().any(|v| v.eq_ignore_ascii_case(word))
}

/// `NULL` after `IS` or `IS NOT` is part of the operator, not a value.
fn null_after_is(word: &str, out: &[Cow<'_, str>]) -> bool {
    if !word.eq_ignore_ascii_case("null") {
        return false;
    }
    match out {
        [.., is] if is == "IS" => true,
        [.., is, not] if is == "IS" && not == "NOT" => true,
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opener {
    In,
    FirstRow,
    NextRow,
    Other,
}

/// Pushes `?`, folding a sign in front of it into the value when the sign is unary.
fn push_value(out: &mut Vec<Cow<'_, str>>) {
    if let Some(last) = out.last() {
        if last == "-" || last == "+" {
            let unary = match out.len().checked_sub(2).map(|i| out[i].as_ref()) {
                None => true,
                Some(before) => {
                    before == "("
                        || before == ","
                        || before.bytes().all(is_operator_byte)
                        || (before.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                            && is_keyword(before))
                }
            };
            if unary {
                out.pop();
            }
        }
    }
    out.push(Cow::Borrowed("?"));
}

/// `( ? , ? , ... )` (or `[ ? , ? ]`) from `open` to the end of `out` becomes `( ? )`.
fn collapse_list(out: &mut Vec<Cow<'_, str>>, open: usize) {
    let inner = &out[open + 1..out.len() - 1];
    if inner.len() < 3 || inner.len().is_multiple_of(2) {
        return;
    }
    let all_values = inner
        .iter()
        .enumerate()
        .all(|(i, t)| if i % 2 == 0 { t == "?" } else { t == "," });
    if all_values {
        let close = out.pop().unwrap_or(Cow::Borrowed(")"));
        out.truncate(open + 2);
        out.push(close);
    }
}

/// Joins normalized tokens with single spaces, except inside parentheses and brackets, before
/// commas and semicolons, around dots and `::`, and between a function name and its `(`.
fn join(out: &[Cow<'_, str>]) -> String {
    let mut text = String::with_capacity(out.iter().map(|t| t.len() + 1).sum());
    let mut previous: Option<&str> = None;
    let mut before_previous: Option<&str> = None;
    for token in out {
        let token = token.as_ref();
        if let Some(prev) = previous {
            // `name(` is a call, except for the table of `INTO t (a, b)` / `TABLE t (...)`
            let call = token == "("
                && !is_keyword(prev)
                && prev
                    .bytes()
                    .next()
                    .is_some_and(|b| is_word_start(b) || b == b'"' || b == b'`')
                && !matches!(before_previous, Some("INTO" | "TABLE"));
            let tight = matches!(token, ")" | "]" | "," | ";" | "." | "::")
                || matches!(prev, "(" | "[" | "." | "::")
                || call
                || (token == "[" && prev != "ARRAY" && !is_operator_text(prev));
            if !tight {
                text.push(' ');
            }
        }
        text.push_str(token);
        before_previous = previous;
        previous = Some(token);
    }
    text
}

fn is_operator_text(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(is_operator_byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(sql: &str) -> String {
        normalize(sql, &scan(sql, Dialect::Postgres))
    }

    #[test]
    fn literals_comments_case_and_spaces() {
        assert_eq!(
            norm("select  ID, name -- who\nFROM Users /* c */ where id = 42 and name = 'o''brien'"),
            "SELECT id, name FROM users WHERE id = ? AND name = ?"
        );
        assert_eq!(
            norm("SELECT * FROM t WHERE a = $1 AND b = -3.5e2"),
            "SELECT * FROM t WHERE a = ? AND b = ?"
        );
        assert_eq!(norm("SELECT a - 1 FROM t"), "SELECT a - ? FROM t");
        assert_eq!(
            norm("SELECT $$x$$, $tag$ a $ b $tag$, E'\\'' FROM t"),
            "SELECT ?, ?, ? FROM t"
        );
        assert_eq!(
            norm("SELECT count(*) FROM \"T\" WHERE x::int = 1"),
            "SELECT count(*) FROM \"T\" WHERE x::int = ?"
        );
    }

    #[test]
    fn in_lists_and_values_rows_collapse() {
        assert_eq!(
            norm("SELECT 1 FROM t WHERE id IN (1, 2, 3)"),
            norm("select 1 from t where id in (7)")
        );
        assert_eq!(
            norm("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), ($1, $2)"),
            "INSERT INTO t (a, b) VALUES (?, ?)"
        );
        // rows that differ in shape are kept
        assert_eq!(
            norm("INSERT INTO t VALUES (1, now()), (2, 3)"),
            "INSERT INTO t VALUES (?, now()), (?, ?)"
        );
        // an IN list with a column in it is not a list of values
        assert_eq!(
            norm("SELECT 1 FROM t WHERE a IN (b, 1)"),
            "SELECT ? FROM t WHERE a IN (b, ?)"
        );
    }

    #[test]
    fn dialect_quotes() {
        let s = "SELECT `a` FROM t WHERE b = \"x\" # note\n AND c = 'it\\'s'";
        assert_eq!(
            normalize(s, &scan(s, Dialect::MySql)),
            "SELECT `a` FROM t WHERE b = ? AND c = ?"
        );
        let s = "SELECT [a] FROM t WHERE b = ?1 AND c = :name AND d = @v";
        assert_eq!(
            normalize(s, &scan(s, Dialect::Sqlite)),
            "SELECT [a] FROM t WHERE b = ? AND c = ? AND d = ?"
        );
    }

    #[test]
    fn keywords_are_sorted() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(KEYWORD_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(OPERATOR_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(KEYWORDS
            .iter()
            .all(|k| is_keyword(k) && is_keyword(&k.to_lowercase())));
        for word in [
            "",
            "A",
            "ASX",
            "SELECTS",
            "users",
            "é",
            "selectselectselectselect",
        ] {
            assert!(!is_keyword(word), "{word}");
        }
    }

    #[test]
    fn measures_depth_and_chains() {
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let s = scan(&deep, Dialect::Generic);
        assert_eq!(s.max_depth, 10_000);
        let chain = format!("SELECT 1{}", " + 1".repeat(5_000));
        assert_eq!(scan(&chain, Dialect::Generic).longest_chain, 5_000);
        let list = format!("SELECT 1 WHERE a IN (1{})", ", 1".repeat(5_000));
        assert!(scan(&list, Dialect::Generic).longest_chain < 5);
        let ands = "SELECT 1 FROM t WHERE a = 1 AND b = 2 AND (c = 3 OR d = 4)";
        assert_eq!(scan(ands, Dialect::Generic).longest_chain, 4);
    }

    #[test]
    fn unterminated_and_odd_input_never_panics() {
        for s in [
            "'",
            "\"abc",
            "/* x",
            "$tag$ never",
            "$",
            "?",
            ":",
            "é = 'ü'",
            "\u{0}",
            "--",
            "x'",
            "U&'",
        ] {
            let _ = norm(s);
        }
    }
}
