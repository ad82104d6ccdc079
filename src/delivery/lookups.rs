//! System name lookups shared while they run. A burst of deliveries to one host
//! opens a connection per delivery, and each connection resolves the name: every
//! `getaddrinfo` holds one of tokio's blocking threads (up to 512, each with its
//! own stack) until it answers, so a thousand concurrent connects to one host
//! would run hundreds of identical lookups on as many threads. A caller asking
//! for a name whose lookup is under way waits for that lookup instead. Nothing is
//! cached: the entry goes as soon as its lookup ends, and the next caller looks
//! the name up afresh.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

type Answer = Result<Arc<[IpAddr]>, Arc<io::Error>>;
type Pending = Shared<BoxFuture<'static, Answer>>;

/// The lookups under way, by host name.
#[derive(Clone, Default)]
pub struct SharedLookups {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl SharedLookups {
    /// The addresses of `host`: those of the lookup already under way for it,
    /// or of `lookup(host)`, started now and shared with whoever asks meanwhile.
    pub async fn resolve<F, Fut>(&self, host: &str, lookup: F) -> io::Result<Vec<IpAddr>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static,
    {
        let answer = {
            let mut pending = self.lock();
            match pending.get(host) {
                Some(answer) => answer.clone(),
                None => {
                    let answer = self.start(host, lookup(host.to_owned()));
                    pending.insert(host.to_owned(), answer.clone());
                    answer
                }
            }
        };
        answer
            .await
            .map(|ips| ips.to_vec())
            .map_err(|err| io::Error::new(err.kind(), err.to_string()))
    }

    /// Runs `lookup` on a task of its own, so it ends and its entry goes even when
    /// every caller stopped waiting (a delivery timed out). The entry is inserted
    /// under the lock the task needs to remove it.
    fn start<Fut>(&self, host: &str, lookup: Fut) -> Pending
    where
        Fut: Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static,
    {
        let lookups = self.clone();
        let host = host.to_owned();
        let task = tokio::spawn(async move {
            let answer = lookup.await.map(Arc::from).map_err(Arc::new);
            lookups.lock().remove(&host);
            answer
        });
        async move {
            task.await
                .unwrap_or_else(|err| Err(Arc::new(io::Error::other(err))))
        }
        .boxed()
        .shared()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        // The map stays consistent whatever panicked while holding it.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(93, 184, 216, 34));

    /// A lookup that counts its calls and answers after `delay`.
    fn counting(
        calls: &Arc<AtomicUsize>,
        delay: Duration,
        answer: io::Result<Vec<IpAddr>>,
    ) -> impl FnOnce(String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        let calls = Arc::clone(calls);
        move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                answer
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_lookup_and_a_later_one_looks_up_again() {
        let lookups = SharedLookups::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let delay = Duration::from_millis(50);
        let answers = futures_util::future::join_all(
            (0..100).map(|_| lookups.resolve("a.test", counting(&calls, delay, Ok(vec![IP])))),
        )
        .await;
        assert!(answers.iter().all(|a| a.as_ref().unwrap() == &[IP]));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let again = lookups
            .resolve("a.test", counting(&calls, delay, Ok(vec![IP])))
            .await;
        assert_eq!(again.unwrap(), [IP]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(lookups.lock().is_empty());
    }

    #[tokio::test]
    async fn names_are_looked_up_separately() {
        let lookups = SharedLookups::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let delay = Duration::from_millis(20);
        let (a, b) = tokio::join!(
            lookups.resolve("a.test", counting(&calls, delay, Ok(vec![IP]))),
            lookups.resolve("b.test", counting(&calls, delay, Ok(vec![IP]))),
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_reaches_every_caller_with_its_kind_and_message() {
        let lookups = SharedLookups::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let failing = || {
            counting(
                &calls,
                Duration::from_millis(20),
                Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            )
        };
        let (a, b) = tokio::join!(
            lookups.resolve("gone.test", failing()),
            lookups.resolve("gone.test", failing()),
        );
        for err in [a.unwrap_err(), b.unwrap_err()] {
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert_eq!(err.to_string(), "no such host");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_nobody_waited_for_is_not_kept() {
        let lookups = SharedLookups::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = lookups.resolve(
            "a.test",
            counting(&calls, Duration::from_millis(20), Ok(vec![IP])),
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(1), slow)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(lookups.lock().is_empty());
        let fresh = lookups
            .resolve("a.test", counting(&calls, Duration::ZERO, Ok(vec![IP])))
            .await;
        assert_eq!(fresh.unwrap(), [IP]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
