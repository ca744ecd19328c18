//! `Tcp`: the collective of ranks in several processes (or nodes) on CPU, over the
//! rendezvous connections: every rank sends its buffer to rank 0, rank 0 sums them in rank
//! order — the order `InProcess` uses, so both give the same bits — and sends the sum back.
//! Messages are a u64 LE value count followed by the f32 LE values.

use super::collective::Collective;
use super::rendezvous::{join, serve};
use crate::error::TrainError;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// How long a rank waits for the others at the rendezvous.
pub const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Tcp {
    rank: usize,
    world: usize,
    /// Rank 0: connections to ranks 1.. in order; other ranks: the one to rank 0.
    streams: Mutex<Vec<TcpStream>>,
}

fn send(stream: &mut TcpStream, data: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + 4 * data.len());
    bytes.extend((data.len() as u64).to_le_bytes());
    data.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    stream.write_all(&bytes)
}

fn receive(stream: &mut TcpStream, into: &mut [f32]) -> Result<(), TrainError> {
    let mut count = [0u8; 8];
    stream
        .read_exact(&mut count)
        .map_err(|e| TrainError::Parallel(format!("a rank's connection broke: {e}")))?;
    let count = u64::from_le_bytes(count) as usize;
    if count != into.len() {
        return Err(TrainError::Parallel(format!(
            "a rank sent {count} values where {} were expected",
            into.len()
        )));
    }
    let mut bytes = vec![0u8; 4 * count];
    stream
        .read_exact(&mut bytes)
        .map_err(|e| TrainError::Parallel(format!("a rank's connection broke: {e}")))?;
    for (v, b) in into.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes(b.try_into().expect("4 bytes"));
    }
    Ok(())
}

impl Tcp {
    /// Rank 0: listen on `master` (`host:port`) and wait for the other ranks.
    pub fn serve(master: &str, world: usize) -> Result<Tcp, TrainError> {
        let listener = TcpListener::bind(master)
            .map_err(|e| TrainError::Parallel(format!("rank 0 cannot listen on {master}: {e}")))?;
        let streams = serve(&listener, world, &[], RENDEZVOUS_TIMEOUT)?;
        Ok(Tcp {
            rank: 0,
            world,
            streams: Mutex::new(streams),
        })
    }

    /// Rank `rank` ≥ 1: join rank 0 at `master`.
    pub fn join(master: &str, rank: usize, world: usize) -> Result<Tcp, TrainError> {
        let (stream, _) = join(master, rank, world, RENDEZVOUS_TIMEOUT)?;
        Ok(Tcp {
            rank,
            world,
            streams: Mutex::new(vec![stream]),
        })
    }
}

impl Collective for Tcp {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), TrainError> {
        let mut streams = self
            .streams
            .lock()
            .map_err(|_| TrainError::Parallel("a rank panicked".to_string()))?;
        let io =
            |e: std::io::Error| TrainError::Parallel(format!("rank {}: sending: {e}", self.rank));
        if self.rank != 0 {
            send(&mut streams[0], data).map_err(io)?;
            return receive(&mut streams[0], data);
        }
        let mut sum = vec![0.0f32; data.len()];
        sum.iter_mut().zip(data.iter()).for_each(|(s, d)| *s += d);
        let mut incoming = vec![0.0f32; data.len()];
        for stream in streams.iter_mut() {
            receive(stream, &mut incoming)?;
            sum.iter_mut().zip(&incoming).for_each(|(s, d)| *s += d);
        }
        for stream in streams.iter_mut() {
            send(stream, &sum).map_err(io)?;
        }
        data.copy_from_slice(&sum);
        Ok(())
    }

    fn abort(&self, _why: &str) {
        // Closing the connections makes every other rank's next exchange fail.
        if let Ok(streams) = self.streams.lock() {
            for stream in streams.iter() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::collective::InProcess;

    /// Over loopback, the same bits as the in-process group (same summation order).
    #[test]
    fn tcp_sums_equal_in_process_sums() {
        let world = 3;
        let data = |rank: usize| vec![[1e8f32, 1.0, -1e8][rank], 0.1 * rank as f32, 3.0];
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let master = format!("127.0.0.1:{port}");
        let over_tcp: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let master = master.clone();
                    scope.spawn(move || {
                        let c = if rank == 0 {
                            Tcp::serve(&master, world).unwrap()
                        } else {
                            Tcp::join(&master, rank, world).unwrap()
                        };
                        let mut d = data(rank);
                        c.all_reduce_sum(&mut d).unwrap();
                        c.all_reduce_sum(&mut d).unwrap();
                        d
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let in_process: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = InProcess::group(world)
                .into_iter()
                .map(|c| {
                    scope.spawn(move || {
                        let mut d = data(c.rank());
                        c.all_reduce_sum(&mut d).unwrap();
                        c.all_reduce_sum(&mut d).unwrap();
                        d
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(over_tcp, in_process);
    }
}
