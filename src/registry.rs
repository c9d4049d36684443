//! The collectors the exporter runs, and their sections of an account's configuration: the one
//! place that names them.
//!
//! Adding a service is one collector module, whose `settings` submodule holds its section, and a
//! line in each list here; adding a kind of target to a service touches only that service's
//! collector.

use serde::Serialize;
use serde::de::{self, MapAccess};

use crate::collector::Collectors;
use crate::yaml::{Context, Invalid, Keys};
use crate::{codeconnections, codepipeline};

/// Names every collector of an account, with its settings, to the collectors of one of its
/// regions: those not running start, those whose settings changed restart, the others go on.
pub fn collectors(settings: &Settings, collectors: &mut Collectors) {
    collectors.run::<codepipeline::Collector>(&settings.codepipeline);
    // Not named where it is off, so a reload that turns it off stops it and removes its series.
    if settings.codeconnections.runs_in(collectors.region()) {
        collectors.run::<codeconnections::Collector>(&settings.codeconnections);
    }
}

/// Every collector's section of one account (or of the organization's members), each under its
/// collector's `SERVICE` name.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Settings {
    pub codepipeline: codepipeline::Settings,
    pub codeconnections: codeconnections::Settings,
}

/// The sections as the file writes them: keys of the account's own mapping, which it hands here
/// through [`Keys::read`].
#[derive(Default)]
pub struct RawSettings {
    codepipeline: Option<codepipeline::settings::RawCodePipeline>,
    codeconnections: Option<codeconnections::settings::RawCodeConnections>,
}

impl Keys for RawSettings {
    const NAME: &'static str = "RawSettings";

    fn keys() -> &'static [&'static str] {
        &[codepipeline::SERVICE, codeconnections::SERVICE]
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &'static str, map: &mut A) -> Result<(), A::Error> {
        match key {
            codepipeline::SERVICE => self.codepipeline = map.next_value()?,
            codeconnections::SERVICE => self.codeconnections = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, Self::keys())),
        }
        Ok(())
    }
}

impl RawSettings {
    /// Each section validated with what its account says; a section left out is its defaults.
    pub fn validate(self, context: &Context) -> Result<Settings, Invalid> {
        Ok(Settings {
            codepipeline: self.codepipeline.unwrap_or_default().validate(context)?,
            codeconnections: self.codeconnections.unwrap_or_default().validate(context)?,
        })
    }
}
