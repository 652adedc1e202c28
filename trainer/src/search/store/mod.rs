//! The study store: the single source of truth of a search that any number of workers share.
//! A study is a row (its name and search file); each trial is a row (its options, state,
//! worker, heartbeat, scores, run folder, error) with a row per trained epoch. Workers claim
//! trials inside transactions, so no two run the same one; a trial whose worker stops sending
//! heartbeats is queued again (or failed once `--retries` are spent); the sampler proposes
//! each new trial from everything the store holds.
//!
//! Two engines behind one set of statements: SQLite (`sqlite:PATH`, workers on one machine)
//! and PostgreSQL (`postgres://…`, workers anywhere).

mod migrations;
mod postgres;
mod records;
mod rows;
mod sql;
mod sqlite;
mod storage;

use anyhow::{Result, bail};

use self::rows::{
    EPOCH_COLUMNS, TRIAL_COLUMNS, decode_params, encode_params, epoch_row, insert_epochs, int,
    text, trial_row,
};
use self::sql::{Db, Param, transaction};
use super::sampler::propose;
use super::trial::{Trial, TrialState};
use crate::metrics::EpochMetrics;

pub use self::records::{Claim, Claimed, Recovery, Silent, Study, Ticket, TrialEnd};
pub use self::storage::Storage;

/// An open study store.
pub struct Store {
    db: Box<dyn Db>,
}

impl Storage {
    /// Connects, and brings the schema up to date.
    pub fn open(&self) -> Result<Store> {
        Ok(Store {
            db: self.connect()?,
        })
    }
}

/// Claims the queued trial with the lowest number, if any.
fn claim_queued(db: &mut dyn Db, study: &Study, worker: &str) -> Result<Option<Claimed>> {
    let engine = db.engine();
    let rows = db.query(
        &format!(
            "SELECT number, params, attempts, run_dir FROM trials \
             WHERE study = $1 AND state = 'queued' ORDER BY number LIMIT 1{}",
            engine.claim_rows()
        ),
        &[text(&study.name)],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let ticket = Ticket {
        study: study.name.clone(),
        number: usize::try_from(row[0].int()?)?,
        attempt: u32::try_from(row[2].int()? + 1)?,
    };
    let now = engine.now();
    db.execute(
        &format!(
            "UPDATE trials SET state = 'running', worker = $3, attempts = $4, \
             heartbeat_at = {now}, started_at = {now} WHERE study = $1 AND number = $2"
        ),
        &[
            text(&study.name),
            int(ticket.number),
            text(worker),
            int(ticket.attempt),
        ],
    )?;
    Ok(Some(Claimed {
        ticket,
        params: decode_params(study, &row[1].text()?.unwrap_or_default())?,
        run_dir: row[3].text()?,
    }))
}

/// Running trials without a heartbeat for `recovery.grace` seconds: queued again, or failed
/// once their retries are spent.
fn give_up_silent(db: &mut dyn Db, study: &Study, recovery: &Recovery) -> Result<Vec<Silent>> {
    let why = format!(" sent no heartbeat for {} s", recovery.grace);
    let rows = db.query(
        &format!(
            "UPDATE trials SET lost = lost + 1, \
             state = CASE WHEN lost + 1 <= $2 THEN 'queued' ELSE 'failed' END, \
             error = 'worker ' || COALESCE(worker, '?') || $4 \
             WHERE study = $1 AND state = 'running' AND heartbeat_at < {} - $3 \
             RETURNING number, worker, state",
            db.engine().now()
        ),
        &[
            text(&study.name),
            int(recovery.retries),
            Param::Real(Some(recovery.grace)),
            text(&why),
        ],
    )?;
    rows.iter()
        .map(|row| {
            Ok(Silent {
                number: usize::try_from(row[0].int()?)?,
                worker: row[1].text()?.unwrap_or_default(),
                state: TrialState::parse(&row[2].text()?.unwrap_or_default())?,
            })
        })
        .collect()
}

impl Store {
    /// The names of the studies in the store.
    pub fn study_names(&mut self) -> Result<Vec<String>> {
        self.db
            .query("SELECT name FROM studies ORDER BY name", &[])?
            .iter()
            .map(|row| Ok(row[0].text()?.unwrap_or_default()))
            .collect()
    }

    /// The study `name`.
    pub fn study(&mut self, name: &str) -> Result<Study> {
        let rows = self
            .db
            .query("SELECT spec FROM studies WHERE name = $1", &[text(name)])?;
        match rows.first() {
            Some(row) => Study::new(name, row[0].text()?.unwrap_or_default()),
            None => bail!("there is no study `{name}`"),
        }
    }

    /// Creates study `name` from the search file `text`, or joins it when it exists and was
    /// created from the same search; returns it and whether it was created.
    pub fn create_or_join(&mut self, name: &str, text: &str) -> Result<(Study, bool)> {
        let given = Study::new(name, text.to_string())?;
        let engine = self.db.engine();
        let created = transaction(self.db.as_mut(), engine.begin(), |db| {
            db.execute(
                &format!(
                    "INSERT INTO studies (name, spec, created_at) VALUES ($1, $2, {}) \
                     ON CONFLICT (name) DO NOTHING",
                    engine.now()
                ),
                &[self::text(name), self::text(text)],
            )
        })? == 1;
        let study = self.study(name)?;
        study.check_same(&given.spec)?;
        Ok((study, created))
    }

    /// Claims a trial for `worker`: a queued one (PostgreSQL passes over rows that other
    /// workers are claiming), else, holding the study, gives up silent workers, then claims a
    /// trial they left or creates the next one with the options the sampler proposes from
    /// every trial so far. Also returns the trials whose workers were given up.
    pub fn claim(
        &mut self,
        study: &Study,
        worker: &str,
        recovery: &Recovery,
    ) -> Result<(Claim, Vec<Silent>)> {
        let engine = self.db.engine();
        let queued = transaction(self.db.as_mut(), engine.begin(), |db| {
            claim_queued(db, study, worker)
        })?;
        if let Some(claimed) = queued {
            return Ok((Claim::Trial(claimed), Vec::new()));
        }
        transaction(self.db.as_mut(), engine.begin(), |db| {
            db.query(
                &format!(
                    "SELECT name FROM studies WHERE name = $1{}",
                    engine.lock_rows()
                ),
                &[text(&study.name)],
            )?;
            let silent = give_up_silent(db, study, recovery)?;
            if let Some(claimed) = claim_queued(db, study, worker)? {
                return Ok((Claim::Trial(claimed), silent));
            }
            let rows = db.query(
                "SELECT number, state, params, score FROM trials WHERE study = $1 ORDER BY number",
                &[text(&study.name)],
            )?;
            let mut earlier = Vec::new();
            let mut unfinished = false;
            for row in &rows {
                let state = TrialState::parse(&row[1].text()?.unwrap_or_default())?;
                let params = decode_params(study, &row[2].text()?.unwrap_or_default())?;
                unfinished |= !state.is_finished();
                earlier.push((
                    params,
                    state.is_finished().then(|| row[3].real()).transpose()?,
                ));
            }
            let number = rows.len();
            if number >= study.total {
                let claim = if unfinished {
                    Claim::Wait
                } else {
                    Claim::Finished
                };
                return Ok((claim, silent));
            }
            let params = propose(&study.spec, number, &earlier)?;
            let now = engine.now();
            db.execute(
                &format!(
                    "INSERT INTO trials (study, number, state, params, attempts, worker, \
                     heartbeat_at, started_at) VALUES ($1, $2, 'running', $3, 1, $4, {now}, {now})"
                ),
                &[
                    text(&study.name),
                    int(number),
                    text(&encode_params(&params)?),
                    text(worker),
                ],
            )?;
            let ticket = Ticket {
                study: study.name.clone(),
                number,
                attempt: 1,
            };
            let claimed = Claimed {
                ticket,
                params,
                run_dir: None,
            };
            Ok((Claim::Trial(claimed), silent))
        })
    }

    /// Records where the claimed trial's run folder is.
    pub fn started(&mut self, ticket: &Ticket, run_dir: &str) -> Result<()> {
        self.db.execute(
            "UPDATE trials SET run_dir = $4 WHERE study = $1 AND number = $2 AND attempts = $3",
            &[
                text(&ticket.study),
                int(ticket.number),
                int(ticket.attempt),
                text(run_dir),
            ],
        )?;
        Ok(())
    }

    /// A heartbeat of a running trial; `false` when the claim is no longer the trial's (its
    /// worker was given up as silent).
    pub fn heartbeat(&mut self, ticket: &Ticket) -> Result<bool> {
        let changed = self.db.execute(
            &format!(
                "UPDATE trials SET heartbeat_at = {} \
                 WHERE study = $1 AND number = $2 AND attempts = $3 AND state = 'running'",
                self.db.engine().now()
            ),
            &[text(&ticket.study), int(ticket.number), int(ticket.attempt)],
        )?;
        Ok(changed == 1)
    }

    /// Records the epochs a running trial has finished (those recorded before stay).
    pub fn add_epochs(&mut self, ticket: &Ticket, epochs: &[EpochMetrics]) -> Result<()> {
        let engine = self.db.engine();
        transaction(self.db.as_mut(), engine.begin(), |db| {
            insert_epochs(db, ticket, epochs)
        })
    }

    /// Records how the trial ended; `false` (and nothing recorded) when the claim is no
    /// longer the trial's, so a trial is finished once however often it was run.
    pub fn finish(&mut self, ticket: &Ticket, end: &TrialEnd) -> Result<bool> {
        let engine = self.db.engine();
        transaction(self.db.as_mut(), engine.begin(), |db| {
            let changed = db.execute(
                &format!(
                    "UPDATE trials SET state = $4, score = $5, test_accuracy = $6, seconds = $7, \
                     checkpoint = $8, error = $9, finished_at = {} \
                     WHERE study = $1 AND number = $2 AND attempts = $3 \
                     AND state IN ('running', 'queued')",
                    engine.now()
                ),
                &[
                    text(&ticket.study),
                    int(ticket.number),
                    int(ticket.attempt),
                    text(end.state.as_str()),
                    Param::Real(end.score),
                    Param::Real(end.test_accuracy),
                    Param::Real(Some(end.seconds)),
                    Param::Text(end.checkpoint.as_deref()),
                    Param::Text(end.error.as_deref()),
                ],
            )?;
            if changed == 0 {
                return Ok(false);
            }
            if !end.epochs.is_empty() {
                db.execute(
                    "DELETE FROM trial_epochs WHERE study = $1 AND number = $2",
                    &[text(&ticket.study), int(ticket.number)],
                )?;
                insert_epochs(db, ticket, &end.epochs)?;
            }
            Ok(true)
        })
    }

    /// Puts a running trial back in the queue (its worker stops: Ctrl-C); its retries are
    /// left as they were.
    pub fn release(&mut self, ticket: &Ticket) -> Result<bool> {
        let changed = self.db.execute(
            "UPDATE trials SET state = 'queued', heartbeat_at = NULL \
             WHERE study = $1 AND number = $2 AND attempts = $3 AND state = 'running'",
            &[text(&ticket.study), int(ticket.number), int(ticket.attempt)],
        )?;
        Ok(changed == 1)
    }

    /// Every trial of the study so far, with its epochs, by number.
    pub fn trials(&mut self, study: &Study) -> Result<Vec<Trial>> {
        let mut trials = self
            .db
            .query(
                &format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study = $1 ORDER BY number"),
                &[text(&study.name)],
            )?
            .iter()
            .map(|row| trial_row(study, row))
            .collect::<Result<Vec<_>>>()?;
        let epochs = self.db.query(
            &format!(
                "SELECT number, {EPOCH_COLUMNS} FROM trial_epochs WHERE study = $1 \
                 ORDER BY number, epoch"
            ),
            &[text(&study.name)],
        )?;
        for row in &epochs {
            let number = usize::try_from(row[0].int()?)?;
            if let Some(trial) = trials.iter_mut().find(|t| t.number == number) {
                trial.epochs.push(epoch_row(&row[1..])?);
            }
        }
        Ok(trials)
    }
}
