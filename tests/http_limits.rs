//! The operator's listeners under a flood: more slow clients (a partial
//! request, then a header line now and then) than the process has file
//! descriptors. Aggregation goes on, health answers on the other address,
//! and the flooded one answers again once the flood ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::util::{Daemon, TestDb, http_get, job, migrated, one_reading, runner, wait_count, wait_http};

/// A client that opens a connection, sends the start of a request and then
/// a header line a second, never finishing; again whenever it is closed.
async fn slow_client(addr: String, stop: Arc<AtomicBool>) {
    use tokio::io::AsyncWriteExt as _;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if stream.write_all(b"GET /health HTTP/1.1\r\nHost: flood\r\n").await.is_err() {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
        }
    }
}

#[tokio::test]
async fn slow_clients_beyond_the_descriptors_take_neither_health_nor_aggregation_down() {
    let db = TestDb::new().await;
    let (_dir, config) = migrated(&db, &job("vitals", "vitals.wasm", "")).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[http]\n", "[http]\nconsole_listen = \"127.0.0.1:0\"\n")).unwrap();
    // 256 descriptors, soft and hard: the runner cannot raise them.
    let mut command = runner(&config, &["run"]);
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let daemon = Daemon::spawn(command);
    let addr = daemon.http_address().await;
    daemon.wait_for("Console listening", 1, 60).await;
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("Console listening")).unwrap();
    let console =
        line[line.find("address=").unwrap() + "address=".len()..].split_whitespace().next().unwrap().to_string();
    daemon.wait_for("Job started.", 1, 60).await;

    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..400).map(|_| tokio::spawn(slow_client(addr.clone(), stop.clone()))).collect();
    daemon.wait_for("HTTP connections at their cap", 1, 60).await;
    // Throughout the flood: rows are aggregated, health answers.
    for user in 100..106 {
        one_reading(&db, user, "2024-05-01").await;
        wait_count(&db, &format!("SELECT count(*) FROM vitals_daily WHERE user_id = {user}"), 1, 60).await;
        let (code, body) = http_get(&console, "/health").await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in flood {
        client.await.unwrap();
    }
    // The flooded address answers again once its slow clients are gone.
    wait_http(&daemon, &addr, "/health", 60, |code, _| code == 200).await;
    let log = daemon.stop().await;
    assert!(!log.contains("Too many open files"), "{log}");
}
