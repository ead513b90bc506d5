//! Criterion benches of the query core, one thread, no N-API: what a first-sight fingerprint
//! costs before the crossing is paid, beside the parts of sqlparser it could be made of (the
//! lexer, the parser, the syntax tree printed back), on the corpus of the JS bench
//! (`benches/fixtures/oltp.sql`). Each figure is the time for the whole corpus; divide by the
//! statement count printed first for the time per statement.

use std::hint::black_box;

use bulwark::query::fingerprint::normalize_lexed;
use bulwark::query::{analyze, fingerprint, Dialect, Limits, RuleConfig};
use criterion::{criterion_group, criterion_main, Criterion};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Tokenizer;

fn corpus() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/oltp.sql");
    std::fs::read_to_string(path)
        .expect("the corpus")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .map(str::to_string)
        .collect()
}

fn bench_query(c: &mut Criterion) {
    let corpus = corpus();
    println!("query corpus: {} statements", corpus.len());
    let limits = Limits::default();
    let rules = RuleConfig::default();
    let mut group = c.benchmark_group("query (whole corpus)");

    group.bench_function("fingerprint", |b| {
        b.iter(|| {
            for sql in &corpus {
                black_box(fingerprint(black_box(sql), Dialect::Postgres).id);
            }
        })
    });

    // The same normalization over sqlparser's lexer's tokens.
    group.bench_function("normalize sqlparser's lexer's tokens", |b| {
        b.iter(|| {
            for sql in &corpus {
                black_box(normalize_lexed(black_box(sql), Dialect::Postgres).map(|n| n.text.len()));
            }
        })
    });

    // The parts of sqlparser: its lexer alone (what a fingerprint uses), its parser (the lexer
    // included; what `analyze` uses), and the parse printed back (what fingerprints cost when
    // they were the printed syntax tree).
    group.bench_function("sqlparser tokenize", |b| {
        let dialect = PostgreSqlDialect {};
        b.iter(|| {
            for sql in &corpus {
                black_box(
                    Tokenizer::new(&dialect, sql)
                        .tokenize()
                        .map(|t| t.len())
                        .ok(),
                );
            }
        })
    });

    group.bench_function("sqlparser parse", |b| {
        let dialect = PostgreSqlDialect {};
        b.iter(|| {
            for sql in &corpus {
                black_box(Parser::parse_sql(&dialect, sql).map(|s| s.len()).ok());
            }
        })
    });

    group.bench_function("sqlparser parse + print", |b| {
        let dialect = PostgreSqlDialect {};
        b.iter(|| {
            for sql in &corpus {
                let text = Parser::parse_sql(&dialect, sql)
                    .map(|s| s.iter().map(|s| s.to_string().len()).sum::<usize>())
                    .ok();
                black_box(text);
            }
        })
    });

    group.bench_function("parse + analyze", |b| {
        b.iter(|| {
            for sql in &corpus {
                let findings = bulwark::query::parse_with(sql, Dialect::Postgres, &limits, |s| {
                    analyze(&s, &rules).len()
                });
                black_box(findings.ok());
            }
        })
    });

    group.finish();
}

criterion_group!(benches, bench_query);
criterion_main!(benches);
