//! Kubernetes Events on app pods, for failures a user would otherwise chase in logs.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;

#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    /// `reportingComponent` / `source.component`.
    component: String,
    host: String,
}

impl Events {
    pub fn new(client: kube::Client, component: &str, host: &str) -> Events {
        Events {
            client,
            component: component.into(),
            host: host.into(),
        }
    }

    /// Posts a Warning on pod `namespace/name`; failures to post are only logged.
    pub async fn warn(&self, namespace: &str, name: &str, reason: &str, message: &str) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let ev = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            // The API server caps messages at 1 KiB.
            message: Some(message.chars().take(1000).collect()),
            type_: Some("Warning".into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            action: Some("Mount".into()),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: Some(self.host.clone()),
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::warn!("posting event on {namespace}/{name}: {e}");
        }
    }
}
