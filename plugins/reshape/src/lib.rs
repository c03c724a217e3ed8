//! temp
use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, export_plugin};
struct Echo;
impl Plugin for Echo {
    type Config = serde_json::Value;
    fn transform(event: Event, _config: Self::Config) -> Result<Outcome, Error> {
        let data: serde_json::Value = event.data()?;
        Outcome::json(&data)
    }
}
export_plugin!(Echo);
