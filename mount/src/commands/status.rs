//! `juicefs status`: the volume format without secrets, and its live sessions.

use crate::meta;
use std::process::ExitCode;

async fn status(url: &str) -> Result<serde_json::Value, String> {
    let m = meta::open(url, true).await.map_err(|e| e.to_string())?;
    let f = m.load_format().await.map_err(|e| e.to_string())?;
    let sessions = m.list_sessions().await.map_err(|e| e.to_string())?;
    let sessions: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|s| {
            let mut v = serde_json::json!({ "Sid": s.sid, "Heartbeat": s.heartbeat });
            if let (Some(info), Some(obj)) = (s.info, v.as_object_mut()) {
                obj.insert("Version".into(), info.version.into());
                obj.insert("Hostname".into(), info.hostname.into());
                obj.insert("MountPoint".into(), info.mount_point.into());
                obj.insert("ProcessID".into(), info.process_id.into());
            }
            v
        })
        .collect();
    let setting = serde_json::to_value(f.masked()).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "Setting": setting, "Sessions": sessions }))
}

pub fn run(url: &str) -> ExitCode {
    let r = super::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(status(url)));
    match r {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("juicefs status: {e}");
            ExitCode::FAILURE
        }
    }
}
