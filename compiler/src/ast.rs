//! The fsql syntax tree: plain data with spans. SQL queries and expressions are sqlparser's AST,
//! kept with the [`SqlText`] they came from so their positions map back to the file.

use fsql_plan::DataType;

use crate::source::{FileId, Snippet, Span};

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

/// Where a piece of SQL text sits in its file (for mapping sqlparser positions).
#[derive(Clone, Debug, PartialEq)]
pub struct SqlText {
    pub file: FileId,
    pub base: usize,
    pub text: String,
}

impl SqlText {
    pub fn snippet(&self) -> Snippet<'_> {
        Snippet {
            file: self.file,
            base: self.base,
            text: &self.text,
        }
    }
}

/// A SQL expression written inside an fsql statement (computed column, watermark, rule condition).
#[derive(Clone, Debug, PartialEq)]
pub struct SqlExpr {
    pub expr: sqlparser::ast::Expr,
    pub source: SqlText,
}

impl SqlExpr {
    pub fn span(&self) -> Span {
        self.source.snippet().whole()
    }
}

/// One statement of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub kind: StatementKind,
    pub span: Span,
}

// sqlparser's AST nodes are large; statements are few, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum StatementKind {
    /// `SET 'key' = 'value'`.
    Set {
        key: Spanned<String>,
        value: Spanned<String>,
    },
    CreateTable(TableDef),
    CreateModel(ModelDef),
    CreateRuleset(RulesetDef),
    /// `CREATE VIEW`, `INSERT INTO` or a bare `SELECT`.
    Query(QueryDef),
    Test(TestDef),
}

/// A `WITH ('key' = 'value')` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionDef {
    pub key: Spanned<String>,
    pub value: Spanned<String>,
}

/// `CREATE TABLE`.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDef {
    pub name: Spanned<String>,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDef>,
    pub primary_key: Option<Vec<Spanned<String>>>,
    pub options: Vec<OptionDef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: Spanned<String>,
    pub kind: ColumnKind,
}

// sqlparser's AST nodes are large; statements are few, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    Physical {
        data_type: Spanned<DataType>,
    },
    /// `name AS expr`.
    Computed(SqlExpr),
    /// `name TYPE METADATA [FROM 'key'] [VIRTUAL]`.
    Metadata {
        data_type: Spanned<DataType>,
        key: Option<String>,
        is_virtual: bool,
    },
}

/// `WATERMARK FOR column AS expr`.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkDef {
    pub column: Spanned<String>,
    pub expr: SqlExpr,
}

/// `CREATE MODEL name INPUT (...) OUTPUT (...) WITH (...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDef {
    pub name: Spanned<String>,
    pub inputs: Vec<(Spanned<String>, DataType)>,
    pub outputs: Vec<(Spanned<String>, DataType)>,
    pub options: Vec<OptionDef>,
}

/// `CREATE RULESET name ON input KEY column DEFAULT 'decision' (RULE ...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RulesetDef {
    pub name: Spanned<String>,
    pub input: Spanned<String>,
    pub key: Spanned<String>,
    pub default_decision: Spanned<String>,
    /// `PARAMETERS (name TYPE DEFAULT value, ...)`.
    pub parameters: Vec<ParamDef>,
    pub rules: Vec<RuleDef>,
}

/// A ruleset parameter: a typed, named value rules read like a column.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDef {
    pub name: Spanned<String>,
    pub data_type: DataType,
    /// The default's text: a number, `'string'`, TRUE or FALSE.
    pub value: Spanned<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleDef {
    pub name: Spanned<String>,
    pub priority: i64,
    pub condition: SqlExpr,
    pub decision: Spanned<String>,
}

/// A statement planned through DataFusion.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryDef {
    pub kind: QueryKind,
    pub query: Box<sqlparser::ast::Query>,
    pub source: SqlText,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryKind {
    CreateView {
        name: Spanned<String>,
        columns: Vec<Spanned<String>>,
    },
    Insert {
        table: Spanned<String>,
    },
    Select,
}

/// `TEST name (...)`: inputs, watermarks and expectations, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TestDef {
    pub name: Spanned<String>,
    pub items: Vec<TestItem>,
}

// sqlparser's AST nodes are large; statements are few, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum TestItem {
    /// `INPUT table (cols) VALUES (...), ...`.
    Input {
        table: Spanned<String>,
        columns: Vec<Spanned<String>>,
        rows: Vec<Vec<SqlExpr>>,
    },
    /// `WATERMARK table <timestamp expression>`.
    Watermark {
        table: Spanned<String>,
        value: SqlExpr,
    },
    /// `EXPECT relation [CHANGELOG] [ORDERED] [TOLERANCE x] (cols) VALUES ... | EMPTY`.
    Expect {
        relation: Spanned<String>,
        /// `CHANGELOG`: the rows as emitted, each with its kind (the pseudo-column `op` first);
        /// otherwise an updating relation's final rows (its changes applied).
        changelog: bool,
        ordered: bool,
        tolerance: Option<f64>,
        columns: Vec<Spanned<String>>,
        rows: Vec<Vec<SqlExpr>>,
    },
    /// `EXPECT ERROR 'text'`: compiling the pipeline (with this test's statements) must fail with
    /// a message containing the text.
    ExpectError(Spanned<String>),
    /// `STATEMENTS $$ ... $$`: extra statements added to the pipeline for this test.
    Statements(SqlText),
}
