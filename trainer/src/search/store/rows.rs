//! Rows to values and back: statement parameters, a trial's options as JSON, and the columns
//! of the `trials` and `trial_epochs` tables.

use anyhow::{Context, Result};

use super::records::{Study, Ticket};
use super::sql::{Cell, Db, Param, Row};
use crate::metrics::EpochMetrics;
use crate::search::sampler::Params;
use crate::search::trial::{Trial, TrialState};

/// A text parameter.
pub(super) fn text(s: &str) -> Param<'_> {
    Param::Text(Some(s))
}

/// An integer parameter (NULL when it does not fit).
pub(super) fn int(i: impl TryInto<i64>) -> Param<'static> {
    Param::Int(i.try_into().ok())
}

/// A trial's options as stored: a JSON object (the space's names are sorted, so is the object).
pub(super) fn encode_params(params: &Params) -> Result<String> {
    let object: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(name, value)| Ok((name.clone(), serde_json::to_value(value)?)))
        .collect::<Result<_>>()?;
    Ok(serde_json::to_string(&object)?)
}

/// Options read back, in the order of the space.
pub(super) fn decode_params(study: &Study, json: &str) -> Result<Params> {
    let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .with_context(|| format!("damaged options in study `{}`: {json}", study.name))?;
    study
        .spec
        .space
        .keys()
        .map(|name| {
            let value = object
                .remove(name)
                .with_context(|| format!("a trial of `{}` lacks `{name}`", study.name))?;
            Ok((name.clone(), serde_json::from_value::<toml::Value>(value)?))
        })
        .collect()
}

/// The columns [`trial_row`] reads, in its order.
pub(super) const TRIAL_COLUMNS: &str = "number, state, params, attempts, lost, worker, score, \
     test_accuracy, seconds, run_dir, checkpoint, error";

/// A trial from a row of [`TRIAL_COLUMNS`] (its epochs are read apart).
pub(super) fn trial_row(study: &Study, row: &Row) -> Result<Trial> {
    let count = |cell: &Cell| -> Result<u32> { Ok(u32::try_from(cell.int()?)?) };
    Ok(Trial {
        number: usize::try_from(row[0].int()?)?,
        state: TrialState::parse(&row[1].text()?.unwrap_or_default())?,
        params: decode_params(study, &row[2].text()?.unwrap_or_default())?,
        attempts: count(&row[3])?,
        lost: count(&row[4])?,
        worker: row[5].text()?,
        score: row[6].real()?,
        test_accuracy: row[7].real()?,
        seconds: row[8].real()?,
        run_dir: row[9].text()?,
        checkpoint: row[10].text()?,
        error: row[11].text()?,
        epochs: Vec::new(),
    })
}

/// The columns [`epoch_row`] reads, in its order.
pub(super) const EPOCH_COLUMNS: &str =
    "epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr, seconds, images_per_sec";

/// An epoch's metrics from a row of [`EPOCH_COLUMNS`].
pub(super) fn epoch_row(row: &[Cell]) -> Result<EpochMetrics> {
    let number = |cell: &Cell| -> Result<f64> { cell.real()?.context("a NULL metric") };
    Ok(EpochMetrics {
        epoch: usize::try_from(row[0].int()?)?,
        train_loss: number(&row[1])?,
        train_accuracy: number(&row[2])?,
        val: row[3].real()?.zip(row[4].real()?),
        test: None,
        lr: number(&row[5])?,
        seconds: number(&row[6])?,
        images_per_sec: number(&row[7])?,
    })
}

/// Records `epochs` of a trial; epochs it holds already are left as they are.
pub(super) fn insert_epochs(
    db: &mut dyn Db,
    ticket: &Ticket,
    epochs: &[EpochMetrics],
) -> Result<()> {
    for m in epochs {
        db.execute(
            &format!(
                "INSERT INTO trial_epochs (study, number, {EPOCH_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (study, number, epoch) DO NOTHING"
            ),
            &[
                text(&ticket.study),
                int(ticket.number),
                int(m.epoch),
                Param::Real(Some(m.train_loss)),
                Param::Real(Some(m.train_accuracy)),
                Param::Real(m.val.map(|v| v.0)),
                Param::Real(m.val.map(|v| v.1)),
                Param::Real(Some(m.lr)),
                Param::Real(Some(m.seconds)),
                Param::Real(Some(m.images_per_sec)),
            ],
        )?;
    }
    Ok(())
}
