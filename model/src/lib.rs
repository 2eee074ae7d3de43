//! Tree-model scoring for fsql's `CREATE MODEL ... WITH ('provider' = 'lightgbm')`.
//!
//! * [`text_format`] reads LightGBM's model text into an [`Ensemble`] (the compiler uses it to check
//!   a model's features against the `INPUT` clause);
//! * [`LightGbm`] is the reference scorer: the LightGBM library itself;
//! * [`CompiledEnsemble`] is the ensemble compiled to branch-free native code with Cranelift;
//! * [`Model`] loads a model, compiles it, checks that both scorers agree to the last bit on
//!   probe rows built from the model's own split thresholds, and scores with the compiled one
//!   only when they do.
//!
//! ```no_run
//! use fsql_model::{Model, Output};
//! let text = std::fs::read_to_string("model.txt").unwrap();
//! let mut model = Model::load(&text, true).unwrap();
//! let rows = vec![0.5; model.features() * 2]; // two rows, row-major
//! let mut scores = vec![0.0; model.outputs() * 2];
//! model.predict(&rows, Output::Transformed, &mut scores).unwrap();
//! println!("{}: {scores:?}", model.engine());
//! ```

mod compiled;
mod ensemble;
mod lightgbm;
mod probe;
pub mod text_format;

pub use compiled::CompiledEnsemble;
pub use ensemble::{Ensemble, Missing, Objective, Split, SplitKind, Tree, zero_small};
pub use lightgbm::{LightGbm, Output};

/// Why a model could not be loaded or scored.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model text is not a valid LightGBM model (`line` is 1-based; 0 when not known).
    #[error("{}invalid LightGBM model: {message}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
    Format { line: usize, message: String },
    /// The LightGBM library reported an error.
    #[error("LightGBM: {0}")]
    LightGbm(String),
    /// Buffers that do not match the model's feature and output counts (a caller bug).
    #[error("{rows} rows of {features} features do not fit {outputs} output values")]
    Shape {
        rows: usize,
        features: usize,
        outputs: usize,
    },
    /// Something the compiled scorer does not implement; the model is scored by LightGBM.
    #[error("not compiled: {0}")]
    Unsupported(String),
    /// Cranelift failed (a bug in the code generator; the model is scored by LightGBM).
    #[error("code generation failed: {0}")]
    Codegen(String),
}

/// The number of rows in `rows` (`features` values each) when `out` holds exactly `outputs` values
/// per row; a `Shape` error otherwise (a caller bug, reported rather than scored wrongly).
fn row_count(
    rows: &[f64],
    features: usize,
    out: &[f64],
    outputs: usize,
) -> Result<usize, ModelError> {
    let n = rows.len() / features.max(1);
    if rows.len() != n * features || out.len() != n * outputs {
        return Err(ModelError::Shape {
            rows: n,
            features,
            outputs: out.len(),
        });
    }
    Ok(n)
}

impl ModelError {
    fn format(line: usize, message: impl Into<String>) -> ModelError {
        ModelError::Format {
            line,
            message: message.into(),
        }
    }
}

/// Which scorer a [`Model`] uses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Native code, equal to LightGBM on every probe row.
    Compiled { probe_rows: usize },
    /// LightGBM's C API, because the compiled scorer was not asked for, could not be built, or
    /// differed on a probe row (the reason).
    LightGbm { reason: String },
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Compiled { probe_rows } => write!(
                f,
                "compiled (Cranelift; equal to LightGBM on {probe_rows} probe rows)"
            ),
            Engine::LightGbm { reason } => write!(f, "LightGBM C API ({reason})"),
        }
    }
}

/// A loaded LightGBM model, scored by the compiled scorer when it is equal to LightGBM.
pub struct Model {
    ensemble: Ensemble,
    reference: LightGbm,
    compiled: Option<CompiledEnsemble>,
    engine: Engine,
}

impl Model {
    /// Loads a model from its text; with `compile`, builds the compiled scorer and keeps it if it
    /// agrees with LightGBM on the probe rows.
    pub fn load(text: &str, compile: bool) -> Result<Model, ModelError> {
        let ensemble = text_format::parse(text)?;
        let reference = LightGbm::load(&ensemble)?;
        if reference.features() != ensemble.num_features()
            || reference.classes() != ensemble.num_class
        {
            return Err(ModelError::LightGbm(format!(
                "LightGBM reads {} features and {} classes, the model text says {} and {}",
                reference.features(),
                reference.classes(),
                ensemble.num_features(),
                ensemble.num_class
            )));
        }
        let mut model = Model {
            ensemble,
            reference,
            compiled: None,
            engine: Engine::LightGbm {
                reason: "compiled scorer disabled".into(),
            },
        };
        if compile {
            model.engine = match model.try_compile() {
                Ok(probe_rows) => Engine::Compiled { probe_rows },
                Err(e) => {
                    model.compiled = None;
                    Engine::LightGbm {
                        reason: e.to_string(),
                    }
                }
            };
        }
        Ok(model)
    }

    fn try_compile(&mut self) -> Result<usize, ModelError> {
        if let Objective::Other { line } = &self.ensemble.objective {
            return Err(ModelError::Unsupported(format!("objective `{line}`")));
        }
        self.compiled = Some(CompiledEnsemble::compile(&self.ensemble)?);
        probe::compare(self)
    }

    /// The ensemble the model text describes.
    pub fn ensemble(&self) -> &Ensemble {
        &self.ensemble
    }

    /// The number of input features.
    pub fn features(&self) -> usize {
        self.ensemble.num_features()
    }

    /// The number of outputs per row (1, or the number of classes).
    pub fn outputs(&self) -> usize {
        self.ensemble.num_class
    }

    /// The scorer in use.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Scores `rows` (row-major, [`Model::features`] values per row; NULL is NaN) into `out`
    /// ([`Model::outputs`] values per row).
    pub fn predict(
        &mut self,
        rows: &[f64],
        output: Output,
        out: &mut [f64],
    ) -> Result<(), ModelError> {
        if self.compiled.is_some() {
            self.predict_compiled(rows, output, out)
        } else {
            self.reference.predict(rows, output, out)
        }
    }

    /// Scores with LightGBM whatever the engine (the reference the compiled scorer is held to).
    pub fn predict_reference(
        &mut self,
        rows: &[f64],
        output: Output,
        out: &mut [f64],
    ) -> Result<(), ModelError> {
        self.reference.predict(rows, output, out)
    }

    fn predict_compiled(
        &mut self,
        rows: &[f64],
        output: Output,
        out: &mut [f64],
    ) -> Result<(), ModelError> {
        let Some(compiled) = &mut self.compiled else {
            return Err(ModelError::Unsupported("no compiled scorer".into()));
        };
        out.fill(0.0);
        compiled.raw_scores(rows, out)?;
        let classes = self.ensemble.num_class;
        if self.ensemble.average_output {
            let iterations = self.ensemble.iterations() as f64;
            out.iter_mut().for_each(|x| *x /= iterations);
        }
        if output == Output::Transformed {
            for row in out.chunks_mut(classes) {
                self.ensemble
                    .objective
                    .transform(row)
                    .ok_or_else(|| ModelError::Unsupported("objective".into()))?;
            }
        }
        Ok(())
    }
}
