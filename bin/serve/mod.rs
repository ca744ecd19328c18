//! `steel serve`: an OpenAI-compatible HTTP server over one model loaded on the CPU or a GPU
//! (`--device`).
//!
//! - [`openai`]: the API's request, response, chunk and error shapes.
//! - [`routes`]: the endpoints; requests are checked and tokenized before they are queued.
//! - [`worker`]: the thread that owns the model and runs the waiting requests as one
//!   continuous batch.

mod openai;
mod routes;
mod worker;

use crate::generate_cmd::{ModelArgs, load};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::sync::Arc;
use steel_trainer::infer::decoder::Decoder;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port (0: any free one; the address listened on is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The model's id in the API (default: the checkpoint directory's name).
    #[arg(long)]
    model_name: Option<String>,
    /// Sequences generated together at most (one batched forward pass per token).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// Requests waiting for a place in the batch at most; past that, 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    queue: u16,
    /// Largest request body in bytes; past that, 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_request_bytes: usize,
}

pub fn run_serve(args: ServeArgs) -> Result<()> {
    let (model, tokenizer) = load(&args.model)?;
    let tokenizer = Arc::new(tokenizer);
    let checkpoint = &args.model.checkpoint;
    let name = match args.model_name {
        Some(name) => name,
        None => std::fs::canonicalize(checkpoint)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| checkpoint.display().to_string()),
    };
    let context = model.config().max_positions;
    let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let queue = worker::spawn(
        model,
        tokenizer.clone(),
        args.batch.into(),
        args.queue.into(),
    )
    .context("starting the model's thread")?;
    let state = Arc::new(routes::AppState::new(
        name.clone(),
        context,
        tokenizer,
        queue,
        args.max_request_bytes,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .context("starting the HTTP runtime")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "steel serve: `{name}` listening on http://{address}")?;
        out.flush()?;
    }
    eprintln!(
        "context {context} tokens, batch {}, queue {}, request bodies up to {} bytes; POST \
         /v1/chat/completions, POST /v1/completions, GET /v1/models",
        args.batch, args.queue, args.max_request_bytes
    );
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, routes::router(state)).await
    })?;
    Ok(())
}
