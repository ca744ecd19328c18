//! The endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`
//! (and `/v1/models/{id}`, `/health`). A request is read, checked and tokenized here, so a bad
//! one is refused with a 4xx before it reaches the model; a good one is queued for the worker
//! and either streamed back as server-sent events or answered whole.

use crate::serve::openai::{
    ApiError, ChatMessage, ChatRequest, CompletionRequest, Content, Endpoint, Header, Prompt,
    Sampling, Stop, finish_reason, json_response, parse,
};
use crate::serve::worker::{Event, Queue, Refused};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use steel_trainer::infer::chat::{Message, render};
use steel_trainer::infer::generate::GenerateOptions;
use steel_trainer::infer::sampling::SamplingParams;
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};
use tokio::sync::mpsc::UnboundedReceiver;

/// Stop strings a request may give.
const MAX_STOPS: usize = 16;

/// What every handler shares.
pub struct AppState {
    pub model_name: String,
    /// The model's context (`max_position_embeddings`).
    pub context: usize,
    pub tokenizer: Arc<Tokenizer>,
    pub stop_tokens: Vec<u32>,
    pub queue: Queue,
    pub max_body: usize,
    /// When the server started (the model's `created`).
    pub created: u64,
    requests: AtomicU64,
}

impl AppState {
    pub fn new(
        model_name: String,
        context: usize,
        tokenizer: Arc<Tokenizer>,
        queue: Queue,
        max_body: usize,
    ) -> AppState {
        AppState {
            model_name,
            context,
            stop_tokens: steel_trainer::infer::tokenizer::stop_tokens(&*tokenizer),
            tokenizer,
            queue,
            max_body,
            created: now(),
            requests: AtomicU64::new(0),
        }
    }
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/health", get(|| async { "ok" }))
        .fallback(|uri: Uri| async move { ApiError::not_found(uri.path()).into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn card(state: &AppState) -> Value {
    json!({
        "id": state.model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "steel",
        "max_model_len": state.context,
    })
}

async fn models(State(state): State<Shared>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [card(&state)]}),
    )
}

async fn model(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    if id == state.model_name {
        json_response(StatusCode::OK, &card(&state))
    } else {
        ApiError::unknown_model(&id, &state.model_name).into_response()
    }
}

async fn chat(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    answer(chat_request(state, body).await)
}

async fn completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    answer(completion_request(state, body).await)
}

/// The body, or 413 past the limit.
fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.max_body)
        } else {
            ApiError::invalid(
                None,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    })
}

async fn chat_request(
    state: Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&read_body(&state, body)?)?;
    check_model(&state, &request.sampling)?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "`messages` must hold at least one message",
        ));
    }
    let messages = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    generate(
        state,
        Endpoint::Chat,
        render(&messages),
        "messages",
        request.sampling,
    )
    .await
}

async fn completion_request(
    state: Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&read_body(&state, body)?)?;
    check_model(&state, &request.sampling)?;
    let prompt = match request.prompt {
        Prompt::One(prompt) => prompt,
        Prompt::Many(mut prompts) if prompts.len() == 1 => prompts.remove(0),
        Prompt::Many(_) => {
            return Err(ApiError::invalid(
                Some("prompt"),
                "one prompt per request: a string, or a list of one string",
            ));
        }
    };
    generate(
        state,
        Endpoint::Completion,
        prompt,
        "prompt",
        request.sampling,
    )
    .await
}

fn check_model(state: &AppState, sampling: &Sampling) -> Result<(), ApiError> {
    if sampling.model == state.model_name {
        Ok(())
    } else {
        Err(ApiError::unknown_model(&sampling.model, &state.model_name))
    }
}

/// A chat message as the template takes it: a known role, text content.
fn message(i: usize, message: ChatMessage) -> Result<Message, ApiError> {
    let role = match message.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(ApiError::invalid(
                Some(&format!("messages[{i}].role")),
                format!("role `{other}` is not supported: system, user or assistant"),
            ));
        }
    };
    let content = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(piece)) => text.push_str(&piece),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            Some(&format!("messages[{i}].content")),
                            format!("content parts of type `{kind}` are not supported: text only"),
                        ));
                    }
                }
            }
            text
        }
    };
    Ok(Message {
        role: role.to_string(),
        content,
    })
}

/// A request's sampling, seed, stop strings and `max_tokens`, checked.
struct Settings {
    sampling: SamplingParams,
    seed: u64,
    stops: Vec<String>,
    max_tokens: Option<usize>,
    stream: bool,
    include_usage: bool,
}

fn settings(sampling: Sampling) -> Result<Settings, ApiError> {
    let refuse = |param: &str, why: &str| Err(ApiError::invalid(Some(param), why.to_string()));
    if sampling.n.is_some_and(|n| n != 1) {
        return refuse("n", "only n = 1 is supported");
    }
    if sampling.best_of.is_some_and(|n| n != 1) {
        return refuse("best_of", "only best_of = 1 is supported");
    }
    if sampling.echo == Some(true) {
        return refuse("echo", "echo is not supported");
    }
    if sampling
        .suffix
        .as_ref()
        .is_some_and(|s| !s.is_null() && s.as_str() != Some(""))
    {
        return refuse("suffix", "suffix is not supported");
    }
    if sampling
        .logprobs
        .as_ref()
        .is_some_and(|l| !l.is_null() && *l != Value::Bool(false))
    {
        return refuse("logprobs", "logprobs are not supported");
    }
    if sampling
        .tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    {
        return refuse("tools", "tools are not supported");
    }
    if sampling
        .response_format
        .as_ref()
        .is_some_and(|f| !f.is_null() && f["type"] != "text")
    {
        return refuse(
            "response_format",
            "only the text response format is supported",
        );
    }
    for (param, value) in [
        ("presence_penalty", sampling.presence_penalty),
        ("frequency_penalty", sampling.frequency_penalty),
    ] {
        if value.is_some_and(|p| p != 0.0) {
            return refuse(param, "not supported; repetition_penalty (an extension) is");
        }
    }
    let max_tokens = sampling.max_completion_tokens.or(sampling.max_tokens);
    if max_tokens == Some(0) {
        return refuse("max_tokens", "max_tokens must be at least 1");
    }
    let params = SamplingParams {
        temperature: sampling.temperature.unwrap_or(1.0),
        top_p: sampling.top_p.unwrap_or(1.0),
        top_k: match sampling.top_k {
            None | Some(-1) => 0,
            Some(k) if k >= 0 => k as usize,
            Some(_) => return refuse("top_k", "top_k must be positive, or 0 or -1 for off"),
        },
        min_p: sampling.min_p.unwrap_or(0.0),
        repetition_penalty: sampling.repetition_penalty.unwrap_or(1.0),
    };
    if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
        return refuse("temperature", "temperature must be 0 (greedy) or positive");
    }
    if !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return refuse("top_p", "top_p must be in (0, 1]");
    }
    if !(0.0..=1.0).contains(&params.min_p) {
        return refuse("min_p", "min_p must be in [0, 1]");
    }
    if !(params.repetition_penalty > 0.0 && params.repetition_penalty.is_finite()) {
        return refuse("repetition_penalty", "repetition_penalty must be positive");
    }
    params
        .validate()
        .map_err(|e| ApiError::invalid(None, e.to_string()))?;
    let stops = match sampling.stop {
        None => Vec::new(),
        Some(Stop::One(stop)) => vec![stop],
        Some(Stop::Many(stops)) => stops,
    };
    if stops.len() > MAX_STOPS {
        return refuse("stop", &format!("at most {MAX_STOPS} stop strings"));
    }
    let seed = match sampling.seed {
        Some(seed) => seed as u64,
        None => {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(now())
        }
    };
    Ok(Settings {
        sampling: params,
        seed,
        stops,
        max_tokens: max_tokens.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        stream: sampling.stream.unwrap_or(false),
        include_usage: sampling.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// Tokenize `text`, check it fits the context, queue it, and answer: streamed or whole.
async fn generate(
    state: Shared,
    endpoint: Endpoint,
    text: String,
    param: &'static str,
    sampling: Sampling,
) -> Result<Response, ApiError> {
    let settings = settings(sampling)?;
    let tokenizer = state.tokenizer.clone();
    let prompt = tokio::task::spawn_blocking(move || tokenizer.encode(&text))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?
        .map_err(|e| ApiError::invalid(Some(param), e.to_string()))?;
    let context = state.context;
    if prompt.is_empty() {
        return Err(ApiError::invalid(Some(param), "the prompt is empty"));
    }
    if prompt.len() >= context {
        return Err(ApiError::invalid(
            Some(param),
            format!(
                "This model's maximum context length is {context} tokens, but the prompt is {} \
                 tokens, leaving no room for a reply",
                prompt.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    // max_tokens is capped at what the context leaves; unset, it is all of that.
    let room = context - prompt.len();
    let options = GenerateOptions {
        max_new_tokens: settings.max_tokens.map_or(room, |m| m.min(room)),
        sampling: settings.sampling,
        seed: settings.seed,
        stop_tokens: state.stop_tokens.clone(),
        stop_strings: settings.stops,
    };
    let number = state.requests.fetch_add(1, Ordering::Relaxed);
    let header = Header {
        endpoint,
        id: match endpoint {
            Endpoint::Chat => format!("chatcmpl-{}-{number}", state.created),
            Endpoint::Completion => format!("cmpl-{}-{number}", state.created),
        },
        created: now(),
        model: state.model_name.clone(),
    };
    let events = state
        .queue
        .submit(header.id.clone(), prompt, options)
        .map_err(|refused| match refused {
            Refused::Full(waiting) => ApiError::queue_full(waiting),
            Refused::Stopped => ApiError::internal("the model's worker has stopped"),
        })?;
    if settings.stream {
        Ok(Sse::new(Chunks::new(header, events, settings.include_usage)).into_response())
    } else {
        whole(header, events).await
    }
}

/// Wait for the end of the generation and answer with all of it.
async fn whole(header: Header, mut events: UnboundedReceiver<Event>) -> Result<Response, ApiError> {
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(_) => {}
            Event::Done(generation) => {
                return Ok(json_response(StatusCode::OK, &header.response(&generation)));
            }
            Event::Failed(why) => return Err(ApiError::internal(why)),
        }
    }
    Err(ApiError::internal("the model's worker stopped"))
}

/// A generation's events as OpenAI's stream: `data: {chunk}` for each piece of text (a chat
/// first sends the assistant's role), a last chunk with the `finish_reason` (and a usage
/// chunk if asked for), then `data: [DONE]`. Dropped when the client goes away, which drops
/// the receiver and so cancels the sequence.
struct Chunks {
    events: UnboundedReceiver<Event>,
    header: Header,
    include_usage: bool,
    out: VecDeque<sse::Event>,
    done: bool,
}

impl Chunks {
    fn new(header: Header, events: UnboundedReceiver<Event>, include_usage: bool) -> Chunks {
        let mut out = VecDeque::new();
        if header.endpoint == Endpoint::Chat {
            out.push_back(data(&header.chunk(Some(""), true, None)));
        }
        Chunks {
            events,
            header,
            include_usage,
            out,
            done: false,
        }
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Text(text) => {
                self.out
                    .push_back(data(&self.header.chunk(Some(&text), false, None)))
            }
            Event::Done(generation) => {
                let finish = finish_reason(generation.stop_reason);
                self.out
                    .push_back(data(&self.header.chunk(None, false, Some(finish))));
                if self.include_usage {
                    self.out
                        .push_back(data(&self.header.usage_chunk(&generation)));
                }
                self.end();
            }
            Event::Failed(why) => {
                self.out.push_back(data(&ApiError::internal(why).body()));
                self.end();
            }
        }
    }

    fn end(&mut self) {
        self.out.push_back(sse::Event::default().data("[DONE]"));
        self.done = true;
    }
}

fn data(value: &Value) -> sse::Event {
    sse::Event::default().data(value.to_string())
}

impl futures_core::Stream for Chunks {
    type Item = Result<sse::Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => this.take(event),
                Poll::Ready(None) => this.take(Event::Failed("the model's worker stopped".into())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
