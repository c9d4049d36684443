//! The collectors the exporter runs: the one place that names them.
//!
//! Adding a service is one collector module and one line here; adding a kind of target to a
//! service touches only that service's collector.

use crate::collector::Collectors;
use crate::config::Account;
use crate::{codeconnections, codepipeline};

/// Names every collector of `account`, with its settings, to the collectors of one of its
/// regions: those not running start, those whose settings changed restart, the others go on.
pub fn collectors(account: &Account, collectors: &mut Collectors) {
    collectors.run::<codepipeline::Collector>(&account.codepipeline);
    // Not named where it is off, so a reload that turns it off stops it and removes its series.
    if account.codeconnections.runs_in(collectors.region()) {
        collectors.run::<codeconnections::Collector>(&account.codeconnections);
    }
}
