//! Client-side rate limiting of the node's Kubernetes API calls (`KUBE_QPS` /
//! `KUBE_BURST`, as client-go's token bucket): a node publishing for hundreds of pods at
//! once queues its requests here instead of tripping the API server's priority and fairness.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A token bucket: `burst` tokens, refilled at `qps` per second.
#[derive(Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(qps: f64, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            qps: qps.max(0.001),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.qps).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.0) / self.qps))
        }
    }
}

#[derive(Clone)]
pub struct RateLimitLayer(pub Arc<Bucket>);

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            bucket: self.0.clone(),
            wait: None,
            permitted: false,
        }
    }
}

pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Bucket>,
    wait: Option<Pin<Box<Sleep>>>,
    permitted: bool,
}

impl<S, R> tower::Service<R> for RateLimited<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        while !self.permitted {
            if let Some(w) = self.wait.as_mut() {
                ready!(w.as_mut().poll(cx));
                self.wait = None;
            }
            match self.bucket.take() {
                Ok(()) => self.permitted = true,
                Err(d) => self.wait = Some(Box::pin(tokio::time::sleep(d))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// Virtual time (paused clock): the bucket lets `burst` through at once, then one
    /// every 1/qps.
    #[tokio::test(start_paused = true)]
    async fn lets_a_burst_through_then_paces() {
        let layer = RateLimitLayer(Arc::new(Bucket::new(10.0, 3)));
        let mut svc = tower::Layer::layer(
            &layer,
            tower::service_fn(|_: ()| async { Ok::<_, ()>(Instant::now()) }),
        );
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            at.push(svc.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        let ms: Vec<u128> = at.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 100, 200, 300]);
    }
}
