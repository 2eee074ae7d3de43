//! Model scoring (`ML_PREDICT`): each row's feature columns, as doubles (NULL is NaN, LightGBM's
//! missing value; BOOLEAN is 0/1), go through the model; the scores are appended as the model's
//! `OUTPUT` columns, then the model's version. Stateless.
//!
//! A batch becomes one row-major matrix and one call to the scorer, into buffers the operator
//! keeps, so scoring allocates nothing per row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowType, Float64Type, SchemaRef};
use fsql_model::{Model, Output};
use fsql_plan::{ModelDecl, PredictSpec};

use crate::control::ControlUpdate;
use crate::error::RuntimeError;
use crate::operator::{Event, Operator, batch_with_schema};

/// A loaded model with the version it is known by.
pub struct LoadedModel {
    pub model: Model,
    pub version: i64,
}

impl LoadedModel {
    /// Loads `decl`'s model file (version 1, the plan's); with `compile`, the compiled scorer is
    /// used when it equals LightGBM. The file must still match the declaration the plan was
    /// compiled against.
    pub fn load(decl: &ModelDecl, compile: bool) -> Result<LoadedModel, RuntimeError> {
        let error = |message: String| RuntimeError::Model {
            model: decl.name.clone(),
            message,
        };
        let text = std::fs::read_to_string(&decl.path)
            .map_err(|e| error(format!("cannot read `{}`: {e}", decl.path)))?;
        let model =
            Model::load(&text, compile).map_err(|e| error(format!("`{}`: {e}", decl.path)))?;
        check_matches(decl, &model).map_err(error)?;
        Ok(LoadedModel { model, version: 1 })
    }
}

/// A model file that no longer fits the plan (a different feature count, names or number of
/// scores) is refused: the plan's columns would be scored against the wrong features.
pub fn check_matches(decl: &ModelDecl, model: &Model) -> Result<(), String> {
    let features = &model.ensemble().feature_names;
    if features.len() != decl.inputs.fields.len() {
        return Err(format!(
            "the model has {} features, the plan's INPUT {}",
            features.len(),
            decl.inputs.fields.len()
        ));
    }
    let named = model.ensemble().has_feature_names();
    if let Some((field, feature)) = decl
        .inputs
        .fields
        .iter()
        .zip(features)
        .find(|(field, feature)| named && field.name != **feature)
    {
        return Err(format!(
            "INPUT column `{}` is the model's feature `{feature}`",
            field.name
        ));
    }
    if model.outputs() != decl.outputs.fields.len() {
        return Err(format!(
            "the model gives {} scores per row, the plan's OUTPUT has {} columns",
            model.outputs(),
            decl.outputs.fields.len()
        ));
    }
    Ok(())
}

/// The `ML_PREDICT` operator.
pub struct Predict {
    name: String,
    /// The model's name (updates address it).
    model_name: String,
    features: Vec<usize>,
    model: LoadedModel,
    output: Output,
    schema: SchemaRef,
    rows: Vec<f64>,
    scores: Vec<f64>,
}

impl Predict {
    pub fn new(
        name: &str,
        spec: &PredictSpec,
        decl: &ModelDecl,
        model: LoadedModel,
        schema: SchemaRef,
    ) -> Predict {
        Predict {
            name: name.to_string(),
            model_name: decl.name.clone(),
            features: spec.features.clone(),
            model,
            output: if decl.raw_scores {
                Output::Raw
            } else {
                Output::Transformed
            },
            schema,
            rows: Vec::new(),
            scores: Vec::new(),
        }
    }

    /// Scores every row of `batch`.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, RuntimeError> {
        let n = batch.num_rows();
        let width = self.features.len();
        self.rows.clear();
        self.rows.resize(n * width, f64::NAN);
        for (f, &column) in self.features.iter().enumerate() {
            let array = batch.columns().get(column).ok_or_else(|| {
                RuntimeError::Plan(format!("`{}` reads column {column}", self.name))
            })?;
            let doubles = as_doubles(array).map_err(|e| RuntimeError::arrow(&self.name, e))?;
            let values = doubles.as_primitive::<Float64Type>();
            for (r, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    self.rows[r * width + f] = v;
                }
            }
        }
        let classes = self.model.model.outputs();
        self.scores.clear();
        self.scores.resize(n * classes, 0.0);
        self.model
            .model
            .predict(&self.rows, self.output, &mut self.scores)
            .map_err(|e| RuntimeError::Model {
                model: self.model_name.clone(),
                message: e.to_string(),
            })?;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for k in 0..classes {
            let class: Float64Array = (0..n)
                .map(|r| self.scores[r * classes + k])
                .collect::<Vec<_>>()
                .into();
            columns.push(Arc::new(class));
        }
        columns.push(Arc::new(Int64Array::from(vec![self.model.version; n])));
        batch_with_schema(&self.name, &self.schema, columns, n)
    }

    /// Which scorer runs, for `fsql explain` and logs.
    pub fn engine(&self) -> String {
        self.model.model.engine().to_string()
    }
}

/// A feature column as Float64 (BOOLEAN → 0/1).
fn as_doubles(array: &ArrayRef) -> Result<ArrayRef, arrow::error::ArrowError> {
    match array.data_type() {
        ArrowType::Float64 => Ok(array.clone()),
        _ => cast(array, &ArrowType::Float64),
    }
}

impl Operator for Predict {
    /// Stateless: nothing to checkpoint.
    fn snapshot(
        &mut self,
        _w: &mut crate::state::codec::StateWriter,
    ) -> Result<bool, RuntimeError> {
        Ok(false)
    }

    /// A new model version scores from the next batch on.
    fn update(&mut self, update: &mut ControlUpdate) -> Result<bool, RuntimeError> {
        let ControlUpdate::Model {
            name,
            version,
            models,
        } = update
        else {
            return Ok(false);
        };
        if *name != self.model_name {
            return Ok(false);
        }
        let model = models.pop().ok_or_else(|| RuntimeError::Model {
            model: name.clone(),
            message: "no loaded copy left for this node".into(),
        })?;
        self.model = LoadedModel {
            model,
            version: *version,
        };
        Ok(true)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<Event>,
    ) -> Result<(), RuntimeError> {
        if batch.num_rows() > 0 {
            out.push(Event::Batch(self.apply(&batch)?));
        }
        Ok(())
    }
}
