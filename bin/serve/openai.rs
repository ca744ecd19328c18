//! The OpenAI API's shapes: the requests `steel serve` reads, the responses and stream chunks
//! it writes, and its error body `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use steel_trainer::infer::generate::{Generation, StopReason};

/// A request refused, as OpenAI writes it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: a request that cannot be served as written.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// 404 for a model other than the one served, as OpenAI answers it.
    pub fn unknown_model(asked: &str, served: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{asked}` does not exist; this server has `{served}`"),
            kind: "invalid_request_error",
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is over the server's limit of {limit} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        }
    }

    pub fn queue_full(queue: usize) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "the server is busy: {queue} requests are already waiting; retry later"
            ),
            kind: "server_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no such endpoint: {what}; this server has POST /v1/chat/completions, POST \
                 /v1/completions, GET /v1/models"
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found"),
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "this endpoint does not take that method (completions are POST, models \
                      GET)"
                .into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// The body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// What both endpoints take besides their prompt. `top_k`, `min_p` and
/// `repetition_penalty` are extensions (as vLLM has them); unset ones are OpenAI's defaults
/// (temperature 1, top-p 1) and off.
#[derive(Debug, Deserialize)]
pub struct Sampling {
    pub model: String,
    pub max_tokens: Option<u64>,
    /// The chat API's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// 0 or -1: off.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<u64>,
    /// `null` or absent: no streaming (as OpenAI takes it).
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logprobs: Option<Value>,
    pub best_of: Option<u64>,
    pub echo: Option<bool>,
    pub suffix: Option<Value>,
    pub tools: Option<Value>,
    pub response_format: Option<Value>,
}

/// A message's `content`: a string, or a list of parts of which only text ones are read.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// `prompt`: a string, or a list of one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A request body: JSON first (else "could not parse"), then the shape (else the field that
/// is missing or wrong).
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(None, format!("the request body is not valid JSON ({e})"))
            .with_code("invalid_json")
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            None,
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let message = e.to_string();
        // serde names a missing field as "missing field `name`".
        let param = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        ApiError {
            param,
            ..ApiError::invalid(None, format!("invalid request: {message}"))
        }
    })
}

/// OpenAI's `finish_reason`: `stop` at a stop token or string, `length` at `max_tokens` or
/// the end of the context.
pub fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::StopToken | StopReason::StopString => "stop",
        StopReason::Length | StopReason::Context => "length",
    }
}

pub fn usage(generation: &Generation) -> Value {
    let (prompt, completion) = (generation.prompt_tokens, generation.tokens.len());
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Which endpoint a response is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// The fields every response and chunk starts with.
#[derive(Clone, Debug)]
pub struct Header {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Header {
    fn with(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The whole response of a request that did not stream.
    pub fn response(&self, generation: &Generation) -> Value {
        let finish = finish_reason(generation.stop_reason);
        let mut body = match self.endpoint {
            Endpoint::Chat => self.with(
                "chat.completion",
                json!([{
                    "index": 0,
                    "message": {"role": "assistant", "content": generation.text},
                    "logprobs": null,
                    "finish_reason": finish,
                }]),
            ),
            Endpoint::Completion => self.with(
                "text_completion",
                json!([{
                    "index": 0,
                    "text": generation.text,
                    "logprobs": null,
                    "finish_reason": finish,
                }]),
            ),
        };
        body["usage"] = usage(generation);
        body
    }

    /// A stream chunk: `text` so far unsent (chat: the first chunk also names the role), or
    /// the end with its `finish_reason`.
    pub fn chunk(&self, text: Option<&str>, first: bool, finish: Option<&str>) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let mut delta = json!({});
                if first {
                    delta["role"] = "assistant".into();
                }
                if let Some(text) = text {
                    delta["content"] = text.into();
                }
                self.with(
                    "chat.completion.chunk",
                    json!([{
                        "index": 0,
                        "delta": delta,
                        "logprobs": null,
                        "finish_reason": finish,
                    }]),
                )
            }
            Endpoint::Completion => self.with(
                "text_completion",
                json!([{
                    "index": 0,
                    "text": text.unwrap_or(""),
                    "logprobs": null,
                    "finish_reason": finish,
                }]),
            ),
        }
    }

    /// The last chunk of a stream with `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, generation: &Generation) -> Value {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        };
        let mut chunk = self.with(object, json!([]));
        chunk["usage"] = usage(generation);
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let error = parse::<ChatRequest>(b"{not json").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, Some("invalid_json"));
        let error = parse::<ChatRequest>(br#"{"model": "m"}"#).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("messages"));
        let error = parse::<ChatRequest>(br#"{"messages": []}"#).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("model"));
        let error = parse::<CompletionRequest>(br#"[1]"#).unwrap_err();
        assert!(error.message.contains("JSON object"), "{error:?}");
        let ok: CompletionRequest =
            parse(br#"{"model": "m", "prompt": "hi", "stop": "x", "top_k": -1}"#).unwrap();
        assert!(matches!(ok.sampling.stop, Some(Stop::One(_))));
        assert_eq!(ok.sampling.top_k, Some(-1));
    }
}
