//! Anti-pattern rules over the syntax tree of a statement.
//!
//! Each rule has a stable id and a severity. `error`: the statement is almost surely wrong
//! (an UPDATE without WHERE). `warning`: it is precisely what the rule says and usually costly.
//! `info`: worth a look, but the rule cannot know whether it hurts (a DISTINCT over a join may
//! be exactly what was meant). Each rule reports at most once per statement. The README has the
//! table with a bad and a good example per rule; the tests below hold statements that must
//! trigger each rule and near misses that must not.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    InTarget, LimitClause, ObjectName, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, Value, Visit, Visitor,
};

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Almost surely a bug.
    Error,
    /// Precisely detected and usually costly.
    Warning,
    /// Worth a look; the rule cannot tell whether it hurts.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding of `analyze`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's stable id, such as `select-star`.
    pub rule: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// What to do instead.
    pub suggestion: String,
}

/// The rules' settings.
#[derive(Clone, Copy, Debug)]
pub struct RuleConfig {
    /// `large-offset` fires above this OFFSET.
    pub large_offset: u64,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig { large_offset: 1000 }
    }
}

/// Every rule id, in the order of the README table.
pub const RULES: &[&str] = &[
    "select-star",
    "update-without-where",
    "delete-without-where",
    "leading-wildcard-like",
    "null-comparison",
    "order-by-random",
    "not-in-subquery",
    "implicit-cross-join",
    "non-sargable-predicate",
    "large-offset",
    "insert-without-columns",
    "distinct-with-join",
    "or-across-columns",
    "unbounded-select",
    "parse-error",
];

/// The finding for a statement that was not parsed.
pub fn parse_error(reason: &str) -> Finding {
    Finding {
        rule: "parse-error",
        severity: Severity::Info,
        message: format!("the statement could not be analyzed: {reason}"),
        suggestion:
            "check the statement and the optimizer's dialect; its fingerprint comes from its tokens"
                .to_string(),
    }
}

/// Runs every rule over `statements`.
pub fn analyze(statements: &[Statement], config: &RuleConfig) -> Vec<Finding> {
    let mut rules = Rules {
        config,
        findings: Vec::new(),
        reported: 0,
        exists_depth: 0,
    };
    for statement in statements {
        rules.top_level(statement);
        let _ = statement.visit(&mut rules);
    }
    rules.findings
}

struct Rules<'c> {
    config: &'c RuleConfig,
    findings: Vec<Finding>,
    /// Bit i set: RULES[i] already reported.
    reported: u32,
    /// How many EXISTS subqueries enclose the current node.
    exists_depth: usize,
}

impl Rules<'_> {
    fn report(
        &mut self,
        rule: &'static str,
        severity: Severity,
        message: String,
        suggestion: &str,
    ) {
        let bit = 1u32 << RULES.iter().position(|r| *r == rule).unwrap_or(31);
        if self.reported & bit != 0 {
            return;
        }
        self.reported |= bit;
        self.findings.push(Finding {
            rule,
            severity,
            message,
            suggestion: suggestion.to_string(),
        });
    }

    /// Rules about the statement as a whole.
    fn top_level(&mut self, statement: &Statement) {
        match statement {
            Statement::Update(update) => {
                if update.selection.is_none() {
                    self.report(
                        "update-without-where",
                        Severity::Error,
                        "UPDATE without WHERE changes every row of the table".to_string(),
                        "add a WHERE clause naming the rows to change (WHERE true, if every row is really meant)",
                    );
                }
                if let Some(selection) = &update.selection {
                    self.check_where(selection);
                }
            }
            Statement::Delete(delete) => {
                if delete.selection.is_none() {
                    self.report(
                        "delete-without-where",
                        Severity::Error,
                        "DELETE without WHERE removes every row of the table".to_string(),
                        "add a WHERE clause naming the rows to delete, or use TRUNCATE if emptying the table is meant",
                    );
                }
                if let Some(selection) = &delete.selection {
                    self.check_where(selection);
                }
            }
            Statement::Insert(insert)
                if insert.columns.is_empty()
                    && insert.assignments.is_empty()
                    && insert.source.is_some() =>
            {
                self.report(
                    "insert-without-columns",
                    Severity::Warning,
                    "INSERT without a column list depends on the table's column order".to_string(),
                    "name the columns: INSERT INTO t (a, b) VALUES (...), so that adding or reordering columns cannot shift the values",
                );
            }
            Statement::Query(query) => self.unbounded_select(query),
            _ => {}
        }
    }

    /// `unbounded-select`: a top-level SELECT reading a table with no WHERE, no LIMIT/FETCH/TOP,
    /// no GROUP BY/HAVING and no aggregate in its select list, i.e. every row of the table comes
    /// back. Info: a small lookup table is fine.
    fn unbounded_select(&mut self, query: &Query) {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return;
        };
        let grouped = match &select.group_by {
            GroupByExpr::All(_) => true,
            GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
        };
        let reads_table = select
            .from
            .iter()
            .any(|t| matches!(t.relation, TableFactor::Table { args: None, .. }));
        if query.limit_clause.is_none()
            && query.fetch.is_none()
            && select.top.is_none()
            && select.selection.is_none()
            && select.having.is_none()
            && select.into.is_none()
            && !grouped
            && reads_table
            && !select.projection.iter().any(projects_aggregate)
        {
            self.report(
                "unbounded-select",
                Severity::Info,
                "SELECT reads every row of the table: no WHERE, no LIMIT".to_string(),
                "add a WHERE clause or a LIMIT (with keyset pagination for lists), unless the table is a small lookup table",
            );
        }
    }

    /// Rules about WHERE predicates: `non-sargable-predicate` and `or-across-columns`.
    fn check_where(&mut self, expr: &Expr) {
        // An explicit stack: an AND/OR chain is as long as the statement allows.
        let mut stack = vec![expr];
        while let Some(e) = stack.pop() {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And,
                    right,
                } => {
                    stack.push(left);
                    stack.push(right);
                }
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Or,
                    right,
                } => {
                    self.or_across_columns(e);
                    stack.push(left);
                    stack.push(right);
                }
                Expr::Nested(inner) => stack.push(inner),
                Expr::UnaryOp { expr: inner, .. } => stack.push(inner),
                leaf => self.non_sargable(leaf),
            }
        }
    }

    fn non_sargable(&mut self, leaf: &Expr) {
        let wrapped = match leaf {
            Expr::BinaryOp {
                left,
                op:
                    BinaryOperator::Eq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq,
                right,
            } => {
                if wraps_column(left) && !has_column(right) {
                    Some(left.as_ref())
                } else if wraps_column(right) && !has_column(left) {
                    Some(right.as_ref())
                } else {
                    None
                }
            }
            Expr::Between {
                expr, low, high, ..
            } if wraps_column(expr) && !has_column(low) && !has_column(high) => Some(expr.as_ref()),
            Expr::In {
                expr,
                target: InTarget::List(list),
                ..
            } if wraps_column(expr) && !list.iter().any(has_column) => Some(expr.as_ref()),
            Expr::Like { expr, .. } | Expr::ILike { expr, .. } if wraps_column(expr) => {
                Some(expr.as_ref())
            }
            _ => None,
        };
        if let Some(wrapped) = wrapped {
            self.report(
                "non-sargable-predicate",
                Severity::Warning,
                format!("the WHERE clause compares `{}`, a computation on a column: a plain index on the column cannot be used", clip(&wrapped.to_string())),
                "compare the bare column and move the computation to the other side (created_at >= $1 instead of date(created_at) = $1), or index the expression itself",
            );
        }
    }

    /// `or-across-columns`: `a = ? OR b = ?`, every branch a simple predicate on one column,
    /// the columns not all the same. Info: the planner may combine two indexes.
    fn or_across_columns(&mut self, or: &Expr) {
        let mut columns: Vec<String> = Vec::new();
        let mut stack = vec![or];
        while let Some(e) = stack.pop() {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Or,
                    right,
                } => {
                    stack.push(left);
                    stack.push(right);
                }
                Expr::Nested(inner) => stack.push(inner),
                leaf => match simple_predicate_column(leaf) {
                    Some(column) => {
                        if !columns.contains(&column) {
                            columns.push(column);
                        }
                    }
                    None => return,
                },
            }
        }
        if columns.len() > 1 {
            columns.reverse();
            self.report(
                "or-across-columns",
                Severity::Info,
                format!("OR across different columns ({}): one index cannot serve both sides", columns.join(", ")),
                "split into a UNION ALL of one query per column (each using its own index), or check that the plan combines the indexes",
            );
        }
    }

    fn select_rules(&mut self, select: &Select) {
        let plain_from = !select.from.is_empty()
            && select
                .from
                .iter()
                .any(|t| !matches!(t.relation, TableFactor::Derived { .. }));
        if self.exists_depth == 0
            && plain_from
            && select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            })
        {
            self.report(
                "select-star",
                Severity::Warning,
                "SELECT * reads and sends every column, including ones added later".to_string(),
                "name the columns the code uses: smaller rows, index-only scans possible, and a schema change cannot break the reader",
            );
        }
        if matches!(
            select.distinct,
            Some(Distinct::Distinct) | Some(Distinct::On(_))
        ) && (select.from.len() > 1 || select.from.iter().any(|t| !t.joins.is_empty()))
        {
            self.report(
                "distinct-with-join",
                Severity::Info,
                "DISTINCT over a join often hides rows multiplied by the join".to_string(),
                "check the join: an EXISTS (or a semi-join) instead of the join, or joining a grouped subquery, avoids building the duplicates",
            );
        }
        if let Some(unjoined) = implicit_cross_join(select) {
            self.report(
                "implicit-cross-join",
                Severity::Warning,
                format!("`{unjoined}` is in the FROM list after a comma with no WHERE condition relating it to the others: every row pairs with every row"),
                "write the join explicitly: FROM a JOIN b ON b.a_id = a.id (or CROSS JOIN if the product is meant)",
            );
        }
        if let Some(selection) = &select.selection {
            self.check_where(selection);
        }
    }

    fn query_rules(&mut self, query: &Query) {
        if let Some(order_by) = &query.order_by {
            if let OrderByKind::Expressions(exprs) = &order_by.kind {
                if exprs.iter().any(|o| is_random_call(&o.expr)) {
                    self.report(
                        "order-by-random",
                        Severity::Warning,
                        "ORDER BY random() numbers and sorts every row to return a few".to_string(),
                        "pick random ids in the application (or TABLESAMPLE), then read those rows by key",
                    );
                }
            }
        }
        let offset = match &query.limit_clause {
            Some(LimitClause::LimitOffset {
                offset: Some(offset),
                ..
            }) => Some(&offset.value),
            Some(LimitClause::OffsetCommaLimit { offset, .. }) => Some(offset),
            _ => None,
        };
        if let Some(Expr::Value(v)) = offset {
            if let Value::Number(n, _) = &v.value {
                if let Ok(n) = n.parse::<f64>() {
                    if n > self.config.large_offset as f64 {
                        self.report(
                            "large-offset",
                            Severity::Warning,
                            format!("OFFSET {n} reads and throws away {n} rows before returning any"),
                            "use keyset pagination: WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT n",
                        );
                    }
                }
            }
        }
    }

    fn expr_rules(&mut self, expr: &Expr) {
        match expr {
            Expr::Like { pattern, .. } | Expr::ILike { pattern, .. } => {
                if let Some(text) = leftmost_string(pattern) {
                    if text.starts_with('%') || text.starts_with('_') {
                        self.report(
                            "leading-wildcard-like",
                            Severity::Warning,
                            "LIKE with a pattern that starts with a wildcard cannot use a B-tree index: every row is read".to_string(),
                            "anchor the pattern at the start ('abc%'), or use a trigram (pg_trgm) or full-text index for substring search",
                        );
                    }
                }
            }
            Expr::BinaryOp {
                left,
                op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq),
                right,
            } if is_null(left) || is_null(right) => {
                let (written, instead) = if *op == BinaryOperator::Eq {
                    ("= NULL", "IS NULL")
                } else {
                    ("<> NULL", "IS NOT NULL")
                };
                self.report(
                    "null-comparison",
                    Severity::Error,
                    format!("`{written}` is never true: a comparison with NULL is unknown"),
                    &format!("use {instead}"),
                );
            }
            Expr::In {
                negated: true,
                target: InTarget::Subquery(_),
                ..
            } => {
                self.report(
                    "not-in-subquery",
                    Severity::Warning,
                    "NOT IN (SELECT ...) returns no row at all once the subquery yields a NULL, and often plans badly".to_string(),
                    "use NOT EXISTS (SELECT 1 FROM ... WHERE ...) or a LEFT JOIN ... WHERE ... IS NULL",
                );
            }
            _ => {}
        }
    }
}

impl Visitor for Rules<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.query_rules(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        self.select_rules(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if matches!(expr, Expr::Exists { .. }) {
            self.exists_depth += 1;
        }
        self.expr_rules(expr);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if matches!(expr, Expr::Exists { .. }) {
            self.exists_depth -= 1;
        }
        ControlFlow::Continue(())
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "group_concat",
    "stddev",
    "variance",
];

fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| ident.value.to_ascii_lowercase())
        .unwrap_or_default()
}

fn projects_aggregate(item: &SelectItem) -> bool {
    let expr = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr {
                if f.over.is_none() && AGGREGATES.contains(&last_name(&f.name).as_str()) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = expr.visit(&mut finder);
    finder.0
}

fn is_random_call(expr: &Expr) -> bool {
    match expr {
        Expr::Function(f) => {
            let name = last_name(&f.name);
            let no_args = match &f.args {
                FunctionArguments::None => true,
                FunctionArguments::List(list) => list.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            no_args && matches!(name.as_str(), "random" | "rand" | "newid")
        }
        Expr::Nested(inner) => is_random_call(inner),
        _ => false,
    }
}

fn is_null(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if v.value == Value::Null)
}

/// The text of the leftmost string literal of a pattern (`'%x'`, `'%' || $1`, `concat('%', x)`).
fn leftmost_string(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::NationalStringLiteral(s)
            | Value::DoubleQuotedString(s) => Some(s),
            Value::DollarQuotedString(d) => Some(&d.value),
            _ => None,
        },
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            ..
        } => leftmost_string(left),
        Expr::Nested(inner) => leftmost_string(inner),
        Expr::Function(f) if last_name(&f.name) == "concat" => match &f.args {
            FunctionArguments::List(list) => match list.args.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => leftmost_string(e),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether `expr` refers to a column (outside any subquery).
fn has_column(expr: &Expr) -> bool {
    struct Finder {
        queries: usize,
        found: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.queries += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.queries -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if self.queries == 0
                && matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        queries: 0,
        found: false,
    };
    let _ = expr.visit(&mut finder);
    finder.found
}

/// Whether `expr` computes something from a column (not a bare column, a row of bare columns,
/// or a subquery).
fn wraps_column(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => false,
        Expr::Subquery(_) | Expr::Exists { .. } => false,
        Expr::Nested(inner) => wraps_column(inner),
        Expr::Tuple(items) => items.iter().any(wraps_column),
        other => has_column(other),
    }
}

fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => Some(
            parts
                .iter()
                .map(|p| p.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join("."),
        ),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

/// The column of `col op value`, `col IN (values)`, `col BETWEEN ...`, `col LIKE ...`,
/// `col IS NULL`, when the other side has no column.
fn simple_predicate_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::BinaryOp {
            left,
            op:
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq,
            right,
        } => match (column_name(left), column_name(right)) {
            (Some(c), None) if !has_column(right) => Some(c),
            (None, Some(c)) if !has_column(left) => Some(c),
            _ => None,
        },
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } if !list.iter().any(has_column) => column_name(expr),
        Expr::Between {
            expr, low, high, ..
        } if !has_column(low) && !has_column(high) => column_name(expr),
        Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. }
            if !has_column(pattern) =>
        {
            column_name(expr)
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => column_name(inner),
        _ => None,
    }
}

/// The name a relation is referred to by: its alias, else the last part of its name.
fn relation_name(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => Some(match alias {
            Some(alias) => alias.name.value.to_ascii_lowercase(),
            None => last_name(name),
        }),
        _ => None,
    }
}

/// The relation of a comma join that no WHERE condition relates to the first relation, if
/// any. `None` also when the rule cannot tell: a FROM item that is not a plain table (a lateral
/// subquery or a table function relates itself), or an unqualified column compared with another
/// column in WHERE (it may well be the join condition).
fn implicit_cross_join(select: &Select) -> Option<String> {
    if select.from.len() < 2 {
        return None;
    }
    // groups[i]: the names of FROM item i and of the relations joined to it explicitly
    let mut groups: Vec<Vec<String>> = Vec::new();
    for item in &select.from {
        groups.push(group_names(item)?);
    }
    let mut parent: Vec<usize> = (0..groups.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let group_of = |name: &str| groups.iter().position(|g| g.iter().any(|n| n == name));
    if let Some(selection) = &select.selection {
        let mut comparisons = Vec::new();
        collect_comparisons(selection, &mut comparisons);
        for (left, right) in comparisons {
            let (l, r) = (qualifiers(left), qualifiers(right));
            let (Some(l), Some(r)) = (l, r) else {
                // an unqualified column in a comparison of columns: cannot tell
                return None;
            };
            for a in &l {
                for b in &r {
                    if let (Some(x), Some(y)) = (group_of(a), group_of(b)) {
                        let (x, y) = (find(&mut parent, x), find(&mut parent, y));
                        parent[x] = y;
                    }
                }
            }
        }
    }
    let root = find(&mut parent, 0);
    (1..groups.len())
        .find(|&i| find(&mut parent, i) != root)
        .map(|i| groups[i][0].clone())
}

fn group_names(item: &TableWithJoins) -> Option<Vec<String>> {
    let mut names = vec![relation_name(&item.relation)?];
    for join in &item.joins {
        if let Some(name) = relation_name(&join.relation) {
            names.push(name);
        }
    }
    Some(names)
}

/// The column-to-column comparisons of a WHERE clause (outside subqueries), as pairs of sides.
fn collect_comparisons<'a>(expr: &'a Expr, out: &mut Vec<(&'a Expr, &'a Expr)>) {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => {
                stack.push(left);
                stack.push(right);
            }
            Expr::Nested(inner) => stack.push(inner),
            Expr::BinaryOp { left, right, .. } if has_column(left) && has_column(right) => {
                out.push((left, right))
            }
            _ => {}
        }
    }
}

/// The table qualifiers of the columns in `expr`; `None` when one of them is unqualified.
fn qualifiers(expr: &Expr) -> Option<Vec<String>> {
    struct Finder {
        names: Vec<String>,
        unqualified: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) => self.unqualified = true,
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => self
                    .names
                    .push(parts[parts.len() - 2].value.to_ascii_lowercase()),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        names: Vec::new(),
        unqualified: false,
    };
    let _ = expr.visit(&mut finder);
    if finder.unqualified {
        None
    } else {
        Some(finder.names)
    }
}

/// Shortens an expression's text for a message.
fn clip(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(57).collect();
        s.push_str("...");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::fingerprint::{fingerprint_with, Dialect, Limits};

    fn rules_of(sql: &str, dialect: Dialect) -> Vec<&'static str> {
        let (_, findings, _) = fingerprint_with(sql, dialect, &Limits::default(), |s| {
            analyze(s, &RuleConfig::default())
        });
        findings
            .unwrap_or_else(|| panic!("{sql} did not parse"))
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    fn triggers(rule: &str, sql: &str) {
        triggers_in(rule, sql, Dialect::Postgres)
    }

    fn triggers_in(rule: &str, sql: &str, dialect: Dialect) {
        let found = rules_of(sql, dialect);
        assert!(
            found.contains(&rule),
            "{rule} should fire on {sql:?}; found {found:?}"
        );
    }

    fn misses(rule: &str, sql: &str) {
        let found = rules_of(sql, Dialect::Postgres);
        assert!(!found.contains(&rule), "{rule} should not fire on {sql:?}");
    }

    #[test]
    fn select_star() {
        triggers("select-star", "SELECT * FROM users WHERE id = $1");
        triggers(
            "select-star",
            "SELECT u.* FROM users u JOIN orders o ON o.user_id = u.id WHERE o.id = 1",
        );
        misses("select-star", "SELECT id, name FROM users WHERE id = $1");
        misses("select-star", "SELECT count(*) FROM users");
        misses(
            "select-star",
            "SELECT id FROM users u WHERE EXISTS (SELECT * FROM orders o WHERE o.user_id = u.id)",
        );
        misses(
            "select-star",
            "SELECT * FROM (SELECT id, name FROM users) s LIMIT 5",
        );
    }

    #[test]
    fn update_and_delete_without_where() {
        triggers("update-without-where", "UPDATE users SET active = false");
        misses(
            "update-without-where",
            "UPDATE users SET active = false WHERE id = $1",
        );
        triggers("delete-without-where", "DELETE FROM sessions");
        misses(
            "delete-without-where",
            "DELETE FROM sessions WHERE expires_at < now()",
        );
        misses("delete-without-where", "TRUNCATE sessions");
        let (_, findings, _) = fingerprint_with(
            "DELETE FROM t",
            Dialect::Postgres,
            &Limits::default(),
            |s| analyze(s, &RuleConfig::default()),
        );
        assert_eq!(findings.unwrap()[0].severity, Severity::Error);
    }

    #[test]
    fn leading_wildcard_like() {
        triggers(
            "leading-wildcard-like",
            "SELECT id FROM users WHERE name LIKE '%son'",
        );
        triggers(
            "leading-wildcard-like",
            "SELECT id FROM users WHERE name ILIKE '%' || $1 || '%'",
        );
        triggers(
            "leading-wildcard-like",
            "SELECT id FROM users WHERE name NOT LIKE '_x'",
        );
        misses(
            "leading-wildcard-like",
            "SELECT id FROM users WHERE name LIKE 'jo%'",
        );
        misses(
            "leading-wildcard-like",
            "SELECT id FROM users WHERE name LIKE $1",
        );
    }

    #[test]
    fn null_comparison() {
        triggers(
            "null-comparison",
            "SELECT id FROM users WHERE deleted_at = NULL",
        );
        triggers(
            "null-comparison",
            "SELECT id FROM users WHERE deleted_at <> NULL",
        );
        triggers(
            "null-comparison",
            "SELECT id FROM users WHERE NULL != deleted_at",
        );
        misses(
            "null-comparison",
            "SELECT id FROM users WHERE deleted_at IS NULL",
        );
        misses(
            "null-comparison",
            "UPDATE users SET deleted_at = NULL WHERE id = 1",
        );
    }

    #[test]
    fn order_by_random() {
        triggers(
            "order-by-random",
            "SELECT id FROM quotes ORDER BY random() LIMIT 1",
        );
        triggers_in(
            "order-by-random",
            "SELECT id FROM quotes ORDER BY RAND() LIMIT 1",
            Dialect::MySql,
        );
        misses(
            "order-by-random",
            "SELECT id FROM quotes ORDER BY random_rank LIMIT 1",
        );
        misses(
            "order-by-random",
            "SELECT id, random() FROM quotes ORDER BY id LIMIT 1",
        );
    }

    #[test]
    fn not_in_subquery() {
        triggers(
            "not-in-subquery",
            "SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM bans)",
        );
        misses(
            "not-in-subquery",
            "SELECT id FROM users WHERE id IN (SELECT user_id FROM bans)",
        );
        misses(
            "not-in-subquery",
            "SELECT id FROM users WHERE id NOT IN (1, 2, 3)",
        );
        misses(
            "not-in-subquery",
            "SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM bans b WHERE b.user_id = u.id)",
        );
    }

    #[test]
    fn implicit_cross_join() {
        triggers(
            "implicit-cross-join",
            "SELECT u.id FROM users u, orders o WHERE u.id = $1",
        );
        triggers(
            "implicit-cross-join",
            "SELECT a.x FROM a, b, c WHERE a.id = b.a_id",
        );
        misses(
            "implicit-cross-join",
            "SELECT u.id FROM users u, orders o WHERE o.user_id = u.id",
        );
        misses(
            "implicit-cross-join",
            "SELECT users.id FROM users, orders WHERE orders.user_id = users.id AND users.id = 1",
        );
        misses(
            "implicit-cross-join",
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
        );
        misses(
            "implicit-cross-join",
            "SELECT u.id FROM users u, unnest(u.tags) t",
        );
        misses(
            "implicit-cross-join",
            "SELECT id FROM users u, orders o WHERE user_id = u.id",
        );
    }

    #[test]
    fn non_sargable_predicate() {
        triggers(
            "non-sargable-predicate",
            "SELECT id FROM users WHERE lower(email) = $1",
        );
        triggers(
            "non-sargable-predicate",
            "SELECT id FROM orders WHERE total * 1.2 > 100",
        );
        triggers(
            "non-sargable-predicate",
            "SELECT id FROM orders WHERE date(created_at) BETWEEN $1 AND $2",
        );
        triggers(
            "non-sargable-predicate",
            "UPDATE orders SET x = 1 WHERE CAST(code AS text) = '5'",
        );
        misses(
            "non-sargable-predicate",
            "SELECT id FROM users WHERE email = lower($1)",
        );
        misses(
            "non-sargable-predicate",
            "SELECT id FROM orders WHERE created_at > now() - interval '1 day'",
        );
        misses("non-sargable-predicate", "SELECT id FROM orders WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT 20");
        misses(
            "non-sargable-predicate",
            "SELECT id FROM orders WHERE a + 1 = b",
        );
    }

    #[test]
    fn large_offset() {
        triggers(
            "large-offset",
            "SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET 50000",
        );
        triggers_in(
            "large-offset",
            "SELECT id FROM posts ORDER BY id LIMIT 50000, 20",
            Dialect::MySql,
        );
        misses(
            "large-offset",
            "SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET 40",
        );
        misses(
            "large-offset",
            "SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET $1",
        );
    }

    #[test]
    fn insert_without_columns() {
        triggers(
            "insert-without-columns",
            "INSERT INTO users VALUES ($1, $2)",
        );
        triggers(
            "insert-without-columns",
            "INSERT INTO archive SELECT * FROM users WHERE id = 1",
        );
        misses(
            "insert-without-columns",
            "INSERT INTO users (id, name) VALUES ($1, $2)",
        );
        misses("insert-without-columns", "INSERT INTO users DEFAULT VALUES");
    }

    #[test]
    fn distinct_with_join() {
        triggers(
            "distinct-with-join",
            "SELECT DISTINCT u.id FROM users u JOIN orders o ON o.user_id = u.id",
        );
        misses(
            "distinct-with-join",
            "SELECT DISTINCT country FROM users WHERE active",
        );
        misses(
            "distinct-with-join",
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
        );
    }

    #[test]
    fn or_across_columns() {
        triggers(
            "or-across-columns",
            "SELECT id FROM users WHERE email = $1 OR phone = $2",
        );
        triggers(
            "or-across-columns",
            "SELECT id FROM users WHERE active AND (email = $1 OR name LIKE $2)",
        );
        misses(
            "or-across-columns",
            "SELECT id FROM users WHERE status = 'a' OR status = 'b'",
        );
        misses(
            "or-across-columns",
            "SELECT id FROM users WHERE (a = 1 AND b = 2) OR (a = 3 AND b = 4)",
        );
    }

    #[test]
    fn unbounded_select() {
        triggers("unbounded-select", "SELECT id, name FROM users");
        triggers(
            "unbounded-select",
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
        );
        misses("unbounded-select", "SELECT id FROM users WHERE active");
        misses("unbounded-select", "SELECT id FROM users LIMIT 10");
        misses("unbounded-select", "SELECT count(*) FROM users");
        misses(
            "unbounded-select",
            "SELECT country, count(*) FROM users GROUP BY country",
        );
        misses("unbounded-select", "SELECT 1");
        misses(
            "unbounded-select",
            "INSERT INTO archive (id) SELECT id FROM users",
        );
    }

    #[test]
    fn clean_statements_have_no_findings() {
        for sql in [
            "SELECT id, name FROM users WHERE id = $1",
            "INSERT INTO orders (user_id, total) VALUES ($1, $2) RETURNING id",
            "UPDATE users SET name = $1 WHERE id = $2",
            "DELETE FROM sessions WHERE id = $1",
            "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE u.id = $1 ORDER BY o.created_at DESC LIMIT 20",
        ] {
            assert_eq!(rules_of(sql, Dialect::Postgres), Vec::<&str>::new(), "{sql}");
        }
    }

    #[test]
    fn every_rule_is_listed_once() {
        let mut sorted = RULES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), RULES.len());
        assert!(RULES.len() <= 31);
    }
}
