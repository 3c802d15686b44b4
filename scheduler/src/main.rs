//! `shoal-scheduler`: jobs fired once per cluster. See `shoal-scheduler --help`.

shoal_common::component_main!(
    "shoal-scheduler",
    "Fires one-time, interval and cron jobs, once per cluster (leader election).",
    shoal_scheduler
);
