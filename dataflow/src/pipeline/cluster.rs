//! A timely cluster of processes (`steel run -n N -p I [-h HOSTFILE]`): which process this
//! is and where every process listens.

use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub processes: usize,
    /// This process, `0..processes`.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("-p {process} must be below -n {processes}")]
    Process { process: usize, processes: usize },
    #[error("reading hostfile {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the hostfile lists {listed} addresses for {processes} processes")]
    Hosts { listed: usize, processes: usize },
}

impl Cluster {
    /// Process `process` of `processes`; the addresses from `hostfile` (one `host:port` per
    /// line, blank lines skipped, the first `processes` taken) or `localhost:2101`, `2102`, ...
    /// `None` for a single process.
    pub fn new(
        processes: usize,
        process: usize,
        hostfile: Option<&Path>,
    ) -> Result<Option<Cluster>, ClusterError> {
        if processes <= 1 {
            return Ok(None);
        }
        let hosts: Vec<String> = match hostfile {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| ClusterError::Read {
                    path: path.to_path_buf(),
                    source,
                })?
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .take(processes)
                .map(String::from)
                .collect(),
            None => (0..processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect(),
        };
        if hosts.len() != processes {
            return Err(ClusterError::Hosts {
                listed: hosts.len(),
                processes,
            });
        }
        if process >= processes {
            return Err(ClusterError::Process { process, processes });
        }
        Ok(Some(Cluster {
            processes,
            process,
            hosts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_is_no_cluster() {
        assert_eq!(Cluster::new(1, 0, None).unwrap(), None);
    }

    #[test]
    fn hosts_default_to_consecutive_local_ports() {
        let cluster = Cluster::new(3, 2, None).unwrap().unwrap();
        assert_eq!(
            cluster.hosts,
            ["localhost:2101", "localhost:2102", "localhost:2103"]
        );
        assert_eq!(cluster.process, 2);
    }

    #[test]
    fn a_hostfile_gives_one_address_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "  a:1\n\nb:2 \nc:3\n").unwrap();
        let cluster = Cluster::new(2, 0, Some(&file)).unwrap().unwrap();
        assert_eq!(cluster.hosts, ["a:1", "b:2"]);
        let short = Cluster::new(4, 0, Some(&file)).unwrap_err().to_string();
        assert_eq!(short, "the hostfile lists 3 addresses for 4 processes");
        let missing = Cluster::new(2, 0, Some(&dir.path().join("none"))).unwrap_err();
        assert!(
            missing.to_string().starts_with("reading hostfile"),
            "{missing}"
        );
        let beyond = Cluster::new(2, 2, None).unwrap_err().to_string();
        assert_eq!(beyond, "-p 2 must be below -n 2");
    }
}
