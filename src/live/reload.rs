//! SIGHUP: read the config again and switch to it atomically, or keep the running one.
//!
//! Everything that can fail happens before anything changes: the new file is read and
//! validated, its sinks are built (their secrets read), and the pipeline's state is carried
//! over in memory. Then, in one step between two turns, the sidecar switches: the pipeline
//! restored from the old one's state (pools that remain keep their baselines, dispersion,
//! trackers and open windows; a pool whose expected weights changed is learned again), the
//! inputs that remain keep their tailers and offsets, and the new notifier takes over the old
//! one's journal, so nothing queued is lost and nothing delivered is sent again.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;

use super::{LiveError, Sidecar, bind_listeners, build_pipeline, check_live, start_notifier};
use crate::config::Settings;
use crate::pipeline::PipelineState;
use crate::source::piped::PipedLines;

/// What files looked like when last read: modification time and length, per path (`None`
/// when missing), to notice an edit without reading them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct FileStamps(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl FileStamps {
    /// The stamps of `paths` now.
    pub(super) fn of(paths: &[PathBuf]) -> Self {
        FileStamps(
            paths
                .iter()
                .map(|path| {
                    let stamp = std::fs::metadata(path)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                    (path.clone(), stamp)
                })
                .collect(),
        )
    }
}

impl Sidecar {
    /// Reloads the config file; returns whether the new one is now running. A config that
    /// cannot run is logged with its error, and the old one keeps running.
    pub(super) fn reload(&mut self, runtime: &tokio::runtime::Handle) -> bool {
        let path = self.options.config.clone();
        tracing::info!(message = "SIGHUP: reloading the config.", path = %path.display());
        let prepared = self.prepare(runtime);
        let (settings, listeners, notifier, state) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::error!(message = "Config reload rejected; the running config is kept.", path = %path.display(), error = %format!("{error:#}"));
                return false;
            }
        };
        if settings.server != self.settings.server {
            tracing::warn!(message = "[server] changed; it takes effect at the next restart.");
        }
        let previous = std::mem::take(&mut self.followed);
        let (mut pipeline, followed) = build_pipeline(&settings, previous, listeners);
        for note in pipeline.restore(state) {
            tracing::warn!(message = "Part of the state was not carried over.", %note);
        }
        let mut old = std::mem::replace(&mut self.output.notifier, notifier);
        // Stop the old delivery tasks now; what they had not delivered is in the journal
        // handed over. A message in flight at this instant may reach its receiver again,
        // with the same idempotency key.
        let _ = runtime.block_on(old.shutdown(Duration::ZERO));
        let (journal, _) = old.state();
        self.output.notifier.restore(journal);
        self.pipeline = pipeline;
        self.followed = followed;
        self.balancer_files = FileStamps::of(&settings.balancer_files);
        self.settings = settings;
        self.output.alerts_changed = true;
        tracing::info!(
            message = "Config reloaded.",
            inputs = self.followed.len(),
            weighted_pools = self.settings.expectations.len(),
            sinks = self.settings.alerting.sinks.len()
        );
        true
    }

    /// Everything the switch needs, or why the new config cannot run.
    fn prepare(&self, runtime: &tokio::runtime::Handle) -> Result<Prepared, LiveError> {
        let settings = Settings::load(&self.options.config)?;
        crate::alert::check(&settings.alerting)?;
        check_live(&settings)?;
        let listeners = bind_listeners(&settings, &self.followed, &self.wake)?;
        let saved = serde_json::to_value(self.pipeline.save()).map_err(LiveError::CarryOver)?;
        let state: PipelineState = serde_json::from_value(saved).map_err(LiveError::CarryOver)?;
        // Last, as it starts delivery tasks: nothing after it can fail.
        let notifier = start_notifier(&settings, &self.options, &self.alert_metrics, runtime)?;
        Ok((settings, listeners, notifier, state))
    }
}

/// A new config ready to switch to: its settings, its new syslog listeners, its notifier and
/// the pipeline's state carried over.
type Prepared = (Settings, BTreeMap<String, PipedLines>, crate::alert::Notifier, PipelineState);
