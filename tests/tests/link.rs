//! A cut link: the worker's stream breaks mid-trial, the worker reconnects on its own and
//! resumes the same attempt, resending what the coordinator missed; nothing is rerun.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lrsweep_tests::{start_worker, wait_for_stored_points, Setup};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

const SPEC: &str = r#"
[search]
strategy = "grid"
min_lr = 0.05
max_lr = 0.1
resolution = 2.5
steps = [6000]
data_fraction = [1.0]
replicates = 1

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [32] }
"#;

/// A TCP relay on loopback whose open connections can be cut at will; new ones still pass.
struct Relay {
    addr: String,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    runtime: tokio::runtime::Runtime,
}

impl Relay {
    fn start(target: String) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let handles = links.clone();
        runtime.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                handles.lock().unwrap().push(link);
            }
        });
        Relay {
            addr,
            links,
            runtime,
        }
    }

    /// Drops every open connection: both ends see the stream break.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[test]
fn a_worker_cut_off_mid_trial_reconnects_and_resumes_the_same_attempt() {
    let setup = Setup::new("link", SPEC);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let relay = Relay::start(addr);
    let mut worker = start_worker(WORKER, &relay.addr, "cut-off");
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.events("trial_started").is_empty() {
        assert!(Instant::now() < deadline, "{:#?}", worker.tail(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // Cut the link once some of the trace has reached the coordinator.
    wait_for_stored_points(&setup.db, 1, Duration::from_secs(30));
    relay.cut();

    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(worker.wait_output(Duration::from_secs(30)).0.success());
    drop(relay.runtime);

    // The worker noticed, came back under the same id and kept its running trial.
    assert!(!worker.events("coordinator_unreachable").is_empty());
    let reconnects = coordinator.events("worker_reconnected");
    assert_eq!(reconnects.len(), 1, "{reconnects:#?}");
    assert_eq!(reconnects[0]["resumed"], 1);
    assert_eq!(worker.events("registered").len(), 2);
    // The trial it was training ran once, to the end, in the same attempt.
    let report = setup.report();
    for t in report["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        assert_eq!(t["steps"], t["budget"], "{t}");
    }
    let steps: u64 = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["steps"].as_u64().unwrap())
        .sum();
    assert_eq!(report["total_steps"].as_u64().unwrap(), steps);
}
