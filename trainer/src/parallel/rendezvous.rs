//! How the ranks of a multi-process (or multi-node) run find each other, the way `torchrun`
//! users expect (`--master-addr`, `--master-port`): rank 0 listens, every other rank connects
//! and says who it is, and rank 0 answers each with the same payload — NCCL's unique id for
//! the GPU path. Every failure names the rank and what went wrong; nothing waits forever.
//!
//! Wire format: a rank sends `b"STEEL-RV"`, its rank and the world size (u32 LE each); rank 0
//! replies with the payload's length (u32 LE) and the payload.

use crate::error::TrainError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"STEEL-RV";

/// Rank 0: accept the `world − 1` other ranks on `listener` (each once), send them `payload`.
/// Returns the connections to ranks `1..world`, in rank order.
pub fn serve(
    listener: &TcpListener,
    world: usize,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<TcpStream>, TrainError> {
    let deadline = Instant::now() + timeout;
    listener
        .set_nonblocking(true)
        .map_err(|e| TrainError::Parallel(format!("rendezvous: {e}")))?;
    let mut joined: Vec<Option<TcpStream>> = (0..world).map(|_| None).collect();
    let mut waiting = world - 1;
    while waiting > 0 {
        let (mut stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> = (1..world).filter(|&r| joined[r].is_none()).collect();
                    return Err(TrainError::Parallel(format!(
                        "rendezvous: ranks {missing:?} did not join within {timeout:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(TrainError::Parallel(format!("rendezvous: accepting: {e}"))),
        };
        stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(timeout)))
            .map_err(|e| TrainError::Parallel(format!("rendezvous: {peer}: {e}")))?;
        let mut hello = [0u8; 16];
        stream.read_exact(&mut hello).map_err(|e| {
            TrainError::Parallel(format!("rendezvous: {peer} sent no greeting: {e}"))
        })?;
        if &hello[..8] != MAGIC {
            return Err(TrainError::Parallel(format!(
                "rendezvous: {peer} is not a Steel rank"
            )));
        }
        let rank = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes")) as usize;
        let their_world = u32::from_le_bytes(hello[12..16].try_into().expect("4 bytes")) as usize;
        if their_world != world {
            return Err(TrainError::Parallel(format!(
                "rendezvous: rank {rank} ({peer}) expects {their_world} ranks, rank 0 {world}"
            )));
        }
        if rank == 0 || rank >= world {
            return Err(TrainError::Parallel(format!(
                "rendezvous: {peer} claims rank {rank} of {world}"
            )));
        }
        if joined[rank].is_some() {
            return Err(TrainError::Parallel(format!(
                "rendezvous: rank {rank} joined twice ({peer})"
            )));
        }
        joined[rank] = Some(stream);
        waiting -= 1;
    }
    let length = (payload.len() as u32).to_le_bytes();
    for (rank, stream) in joined.iter_mut().enumerate().skip(1) {
        let stream = stream.as_mut().expect("every rank joined");
        stream
            .write_all(&length)
            .and_then(|_| stream.write_all(payload))
            .map_err(|e| {
                TrainError::Parallel(format!("rendezvous: sending to rank {rank}: {e}"))
            })?;
    }
    Ok(joined.into_iter().skip(1).flatten().collect())
}

/// Rank `rank` (≥ 1) of `world`: connect to rank 0 at `master` (retrying while it starts),
/// and receive its payload. Returns the connection and the payload.
pub fn join(
    master: &str,
    rank: usize,
    world: usize,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), TrainError> {
    let deadline = Instant::now() + timeout;
    let address = master
        .to_socket_addrs()
        .map_err(|e| TrainError::Parallel(format!("rendezvous: `{master}`: {e}")))?
        .next()
        .ok_or_else(|| {
            TrainError::Parallel(format!("rendezvous: `{master}` resolves to no address"))
        })?;
    let mut stream = loop {
        match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => {
                return Err(TrainError::Parallel(format!(
                    "rendezvous: rank {rank} could not reach rank 0 at {master} within {timeout:?}: {e}"
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| TrainError::Parallel(format!("rendezvous: {e}")))?;
    let mut hello = MAGIC.to_vec();
    hello.extend((rank as u32).to_le_bytes());
    hello.extend((world as u32).to_le_bytes());
    stream.write_all(&hello).map_err(|e| {
        TrainError::Parallel(format!("rendezvous: rank {rank} greeting rank 0: {e}"))
    })?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).map_err(|e| {
        TrainError::Parallel(format!(
            "rendezvous: rank {rank} got no answer from rank 0 (refused or timed out): {e}"
        ))
    })?;
    let mut payload = vec![0u8; u32::from_le_bytes(length) as usize];
    stream.read_exact(&mut payload).map_err(|e| {
        TrainError::Parallel(format!("rendezvous: rank {rank} reading the payload: {e}"))
    })?;
    Ok((stream, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (listener, address)
    }

    #[test]
    fn every_rank_receives_rank_zeros_payload() {
        let (listener, address) = loopback();
        let world = 5;
        let payload: Vec<u8> = (0..128u8).collect(); // the size of an NCCL unique id
        std::thread::scope(|scope| {
            let joined: Vec<_> = (1..world)
                .map(|rank| {
                    let address = address.clone();
                    scope.spawn(move || join(&address, rank, world, Duration::from_secs(10)))
                })
                .collect();
            serve(&listener, world, &payload, Duration::from_secs(10)).unwrap();
            for handle in joined {
                assert_eq!(handle.join().unwrap().unwrap().1, payload);
            }
        });
    }

    #[test]
    fn a_rank_joining_twice_or_with_another_world_is_refused() {
        let (listener, address) = loopback();
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let address = address.clone();
                scope.spawn(move || join(&address, 1, 3, Duration::from_secs(5)));
            }
            let error = serve(&listener, 3, b"id", Duration::from_secs(5))
                .unwrap_err()
                .to_string();
            assert!(error.contains("rank 1 joined twice"), "{error}");
        });
        let (listener, address) = loopback();
        std::thread::scope(|scope| {
            scope.spawn(move || join(&address, 1, 4, Duration::from_secs(5)));
            let error = serve(&listener, 2, b"id", Duration::from_secs(5))
                .unwrap_err()
                .to_string();
            assert!(error.contains("expects 4 ranks"), "{error}");
        });
    }

    #[test]
    fn missing_ranks_and_an_absent_master_time_out_with_a_reason() {
        let (listener, _) = loopback();
        let error = serve(&listener, 3, b"id", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(error.contains("ranks [1, 2] did not join"), "{error}");
        let (listener, address) = loopback();
        drop(listener);
        let error = join(&address, 1, 2, Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(error.contains("could not reach rank 0"), "{error}");
    }
}
