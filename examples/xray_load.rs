//! Bench tool: sends X-Ray segments over UDP as an instrumented app would.
//! `xray_load HOST:PORT RATE SECONDS`: RATE segments a second (0: as fast as it can) for SECONDS;
//! prints the number sent. Each segment is a realistic ~450-byte document with a fresh trace id.

use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: xray_load HOST:PORT RATE SECONDS";
    let addr = args.next().expect(usage);
    let rate: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(&addr).unwrap();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut sent: u64 = 0;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while Instant::now() < end {
        if rate > 0 {
            // Keep to the rate: the segments due by now, in 1 ms steps.
            let due = start.elapsed().as_micros() as u64 * rate / 1_000_000;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        let doc = format!(
            "{{\"format\":\"json\",\"version\":1}}\n{{\"trace_id\":\"1-{:08x}-{:024x}\",\"id\":\"{:016x}\",\"name\":\"backend-flask\",\
             \"start_time\":{now:.6},\"end_time\":{:.6},\"http\":{{\"request\":{{\"method\":\"GET\",\"url\":\"http://127.0.0.1:4567/api/activities/home\",\
             \"client_ip\":\"127.0.0.1\",\"user_agent\":\"bench\"}},\"response\":{{\"status\":200,\"content_length\":199}}}},\
             \"aws\":{{\"xray\":{{\"sdk\":\"X-Ray for Python\",\"sdk_version\":\"2.15.0\"}}}},\"service\":{{\"runtime\":\"CPython\"}}}}",
            now as u64,
            next() as u128 & ((1u128 << 96) - 1),
            next(),
            now + 0.003
        );
        if sock.send(doc.as_bytes()).is_ok() {
            sent += 1;
        }
    }
    println!("{sent}");
}
