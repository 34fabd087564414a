//! The MongoDB-compatible server's CPU time, when it runs on this machine: the process that
//! listens on the URI's port is found through `/proc/net/tcp` (the socket's inode) and
//! `/proc/<pid>/fd`, and its user + system time read from `/proc/<pid>/stat`. A section that
//! compares two ways of writing the same records can then report the server work each cost,
//! which does not depend on how fast the shared machine happened to be during each one.
//! Linux only; on anything else, or a remote server, there is no figure.

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// A local server process whose CPU time can be read.
#[derive(Debug, Clone, Copy)]
pub struct ServerCpu {
    pid: u32,
}

impl ServerCpu {
    /// The local process listening on the port of `uri` (the first host's), if any.
    pub fn find(uri: &str) -> Option<ServerCpu> {
        let port = first_port(uri)?;
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(t) = std::fs::read_to_string(table) {
                inodes.extend(listening_inodes(&t, port));
            }
        }
        if inodes.is_empty() {
            return None;
        }
        let procs = std::fs::read_dir("/proc").ok()?;
        procs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| holds_socket(*pid, &inodes))
            .map(|pid| ServerCpu { pid })
    }

    /// User + system CPU seconds the server has used so far.
    pub fn seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        cpu_ticks(&stat).map(|t| t as f64 / TICKS_PER_S)
    }
}

/// The port of the first host in a `mongodb://` URI (27017 when none is given).
fn first_port(uri: &str) -> Option<u16> {
    let rest = uri.split_once("://")?.1;
    let hosts = rest.split(['/', '?']).next()?;
    let host = hosts.rsplit('@').next()?.split(',').next()?;
    match host.rsplit_once(':') {
        Some((_, p)) if !host.ends_with(']') => p.parse().ok(),
        _ => Some(27017),
    }
}

/// Inodes of the sockets listening (state 0A) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// Whether process `pid` has one of the socket `inodes` open.
fn holds_socket(pid: u32, inodes: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let t = target.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name in
/// parentheses may contain spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_hosts_port_is_read_from_the_uri() {
        let cases = [
            (
                "mongodb://127.0.0.1:27038/?replicaSet=secantus",
                Some(27038),
            ),
            ("mongodb://u:p@db1:27018,db2:27019/app", Some(27018)),
            ("mongodb://localhost/app", Some(27017)),
            ("mongodb+srv://cluster.example.net/app", Some(27017)),
            ("mongodb://[::1]:27020/?x=1", Some(27020)),
            ("not a uri", None),
        ];
        for (uri, want) in cases {
            assert_eq!(first_port(uri), want, "{uri}");
        }
    }

    #[test]
    fn only_listening_sockets_on_the_port_are_taken() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:69EE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:69EE 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_inodes(table, 0x69EE), vec!["4242".to_string()]);
        assert_eq!(listening_inodes(table, 8000), vec!["4444".to_string()]);
        assert!(listening_inodes(table, 27017).is_empty());
    }

    #[test]
    fn cpu_ticks_count_user_and_system_time_past_a_name_with_spaces() {
        let stat = "4321 (secantusd rs) S 1 4321 4321 0 -1 4194560 5000 0 0 0 1250 375 0 0 20 0 9 0 100 2052660 10791 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(1625));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let me = ServerCpu {
            pid: std::process::id(),
        };
        assert!(me.seconds().is_some_and(|s| s >= 0.0));
    }
}
