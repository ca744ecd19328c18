//! `steel serve` through a real HTTP client (ureq), on a checkpoint trained here: what it
//! answers equals `steel generate` (streamed or not, chat or completion, one request or
//! several at once with their own sampling), bad requests get OpenAI-shaped 4xx errors, and
//! the server stays up after every one of them.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use steel_trainer::infer::chat::{DEFAULT_SYSTEM, template};
use steel_trainer::infer::tokenizer::{Codec, Tokenizer};

const STEEL: &str = env!("CARGO_BIN_EXE_steel");

/// A tiny-dense checkpoint trained 2 steps on the demo corpus, and its tokenizer, made once
/// for every test of this file (under the target's scratch directory, replaced each run).
fn checkpoint() -> &'static (PathBuf, PathBuf) {
    static MADE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        common::trained(&dir)
    })
}

fn model_args() -> Vec<String> {
    let (checkpoint, tokenizer) = checkpoint();
    vec![
        "--checkpoint".into(),
        checkpoint.display().to_string(),
        "--tokenizer".into(),
        tokenizer.display().to_string(),
    ]
}

/// A running `steel serve`, killed when dropped (a failing test included).
struct Server {
    child: Child,
    url: String,
    _stdout: BufReader<ChildStdout>,
    /// Its stderr so far, line by line (echoed to the test's).
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `steel serve --port 0 EXTRA...`, once it says where it listens.
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(STEEL)
            .arg("serve")
            .args(model_args())
            .args(["--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steel serve starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("steel serve: {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let Some(at) = line.find("http://") else {
            let _ = child.kill();
            panic!("steel serve printed no address: {line:?}");
        };
        let url = line[at..].trim().to_string();
        Server {
            child,
            url,
            _stdout: stdout,
            log,
        }
    }

    /// The server's log lines that contain `text`.
    fn logged(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let mut response = agent()
            .post(&format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .send(body)
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?} (status {status})"));
        (status, value)
    }

    fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, &body.to_string())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut response = agent()
            .get(&format!("{}{path}", self.url))
            .call()
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    /// A streamed request: each `data:` payload, `[DONE]` last.
    fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut response = agent()
            .post(&format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .send(&body.to_string())
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let reader = BufReader::new(response.body_mut().as_reader());
        let mut events = Vec::new();
        let mut lines = reader.lines();
        while let Some(line) = lines.next() {
            let line = line.unwrap();
            if line.is_empty() {
                continue;
            }
            let data = line
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data line: {line:?}"));
            events.push(data.to_string());
            // Each event is one data line and a blank line.
            assert_eq!(lines.next().unwrap().unwrap(), "");
        }
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        events
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// `steel generate ... --json`: its one line.
fn generate(extra: &[&str]) -> Value {
    let out = Command::new(STEEL)
        .arg("generate")
        .args(model_args())
        .args(extra)
        .args(["--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    lines.into_iter().next().unwrap()
}

/// `stop_reason` of `steel generate` as OpenAI's `finish_reason`.
fn finish(generated: &Value) -> &'static str {
    match generated["stop_reason"].as_str().unwrap() {
        "stop_token" | "stop_string" => "stop",
        "length" | "context" => "length",
        other => panic!("stop reason {other}"),
    }
}

fn tokens(generated: &Value) -> usize {
    generated["tokens"].as_array().unwrap().len()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::load(&checkpoint().1).unwrap()
}

fn prompt_tokens(text: &str) -> usize {
    tokenizer().encode(text).unwrap().len()
}

fn chat_body(message: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": message}],
        "temperature": 0,
        "max_tokens": 8,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The streamed chunks of a chat: the role first, then content deltas, then the finish
/// reason; returns the text and the finish reason.
fn read_chat_stream(events: &[String]) -> (String, String, Option<Value>) {
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "tiny");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        if let Some(u) = chunk.get("usage") {
            assert!(chunk["choices"].as_array().unwrap().is_empty());
            usage = Some(u.clone());
            continue;
        }
        assert!(
            finish.is_none(),
            "nothing after the finish reason but usage"
        );
        let choice = &chunk["choices"][0];
        if let Some(piece) = choice["delta"]["content"].as_str() {
            text.push_str(piece);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_string());
        }
    }
    (text, finish.expect("a finish reason"), usage)
}

#[test]
fn chat_and_completions_answer_what_steel_generate_does_streamed_or_not() {
    let server = Server::start(&["--model-name", "tiny"]);
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(server.get("/v1/models/tiny").0, 200);

    // A streamed chat, greedy: the same text and token count as `steel generate --chat`.
    let expected = generate(&["--prompt", "今天", "--chat", "--max-new-tokens", "8"]);
    let chat_prompt = prompt_tokens(&template(DEFAULT_SYSTEM, &[], "今天"));
    let events = server.stream(
        "/v1/chat/completions",
        &chat_body(
            "今天",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    let (text, reason, usage) = read_chat_stream(&events);
    assert_eq!(text, expected["text"].as_str().unwrap());
    assert_eq!(reason, finish(&expected));
    let usage = usage.expect("include_usage gives a usage chunk");
    assert_eq!(usage["completion_tokens"], tokens(&expected));
    assert_eq!(usage["prompt_tokens"], chat_prompt);
    assert_eq!(usage["total_tokens"], chat_prompt + tokens(&expected));

    // The same chat whole.
    let (status, whole) = server.post_json("/v1/chat/completions", &chat_body("今天", json!({})));
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "tiny");
    let choice = &whole["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], expected["text"]);
    assert_eq!(choice["finish_reason"], finish(&expected));
    assert_eq!(whole["usage"]["prompt_tokens"], chat_prompt);
    assert_eq!(whole["usage"]["completion_tokens"], tokens(&expected));
    // `"stream": null` is no stream, as OpenAI takes it.
    let body = chat_body("今天", json!({"stream": null}));
    let (status, same) = server.post_json("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["choices"][0]["message"]["content"], expected["text"]);

    // A system message and content as a list of text parts: `--system`.
    let expected_system = generate(&[
        "--prompt",
        "天气",
        "--chat",
        "--system",
        "你是助手",
        "--max-new-tokens",
        "8",
    ]);
    let body = json!({
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "你是助手"},
            {"role": "user", "content": [{"type": "text", "text": "天"}, {"type": "text", "text": "气"}]},
        ],
        "temperature": 0,
        "max_tokens": 8,
    });
    let (status, with_system) = server.post_json("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{with_system}");
    assert_eq!(
        with_system["choices"][0]["message"]["content"],
        expected_system["text"]
    );

    // A text completion, whole and streamed: `steel generate` without the template.
    let expected_plain = generate(&["--prompt", "今天", "--max-new-tokens", "8"]);
    let body = json!({"model": "tiny", "prompt": "今天", "temperature": 0, "max_tokens": 8});
    let (status, completion) = server.post_json("/v1/completions", &body);
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["choices"][0]["text"], expected_plain["text"]);
    assert_eq!(
        completion["choices"][0]["finish_reason"],
        finish(&expected_plain)
    );
    assert_eq!(completion["usage"]["prompt_tokens"], prompt_tokens("今天"));
    assert_eq!(
        completion["usage"]["completion_tokens"],
        tokens(&expected_plain)
    );
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let events = server.stream("/v1/completions", &streamed);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, expected_plain["text"].as_str().unwrap());
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        finish(&expected_plain)
    );

    // A stop string (one of a list) ends the text as `--stop` does.
    let free = generate(&["--prompt", "今天", "--max-new-tokens", "12"]);
    let free_text = free["text"].as_str().unwrap();
    let stop: String = free_text.chars().skip(2).take(1).collect();
    if !stop.is_empty() {
        let expected_stop = generate(&[
            "--prompt",
            "今天",
            "--max-new-tokens",
            "12",
            "--stop",
            &stop,
        ]);
        let body = json!({"model": "tiny", "prompt": "今天", "temperature": 0, "max_tokens": 12, "stop": ["never here", stop]});
        let (status, stopped) = server.post_json("/v1/completions", &body);
        assert_eq!(status, 200, "{stopped}");
        assert_eq!(stopped["choices"][0]["text"], expected_stop["text"]);
        assert_eq!(
            stopped["choices"][0]["finish_reason"],
            finish(&expected_stop)
        );
    }
}

#[test]
fn concurrent_requests_each_get_their_own_answer() {
    let server = Server::start(&["--model-name", "tiny", "--batch", "8"]);
    // Different prompts, lengths and sampling, some streamed: all at once.
    let cases: Vec<(Value, Vec<&str>, bool)> = vec![
        (
            chat_body("今天", json!({"max_tokens": 10})),
            vec!["--prompt", "今天", "--chat", "--max-new-tokens", "10"],
            true,
        ),
        (
            chat_body("你好吗", json!({"max_tokens": 6})),
            vec!["--prompt", "你好吗", "--chat", "--max-new-tokens", "6"],
            false,
        ),
        (
            chat_body(
                "天气",
                json!({"temperature": 0.9, "top_k": 20, "seed": 5, "max_tokens": 12}),
            ),
            vec![
                "--prompt",
                "天气",
                "--chat",
                "--temperature",
                "0.9",
                "--top-k",
                "20",
                "--seed",
                "5",
                "--max-new-tokens",
                "12",
            ],
            true,
        ),
        (
            chat_body(
                "hello",
                json!({"temperature": 1.2, "top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.3, "seed": 77, "max_tokens": 9}),
            ),
            vec![
                "--prompt",
                "hello",
                "--chat",
                "--temperature",
                "1.2",
                "--top-p",
                "0.9",
                "--min-p",
                "0.05",
                "--repetition-penalty",
                "1.3",
                "--seed",
                "77",
                "--max-new-tokens",
                "9",
            ],
            false,
        ),
    ];
    let expected: Vec<Value> = cases.iter().map(|(_, args, _)| generate(args)).collect();
    // A long greedy completion runs first (this prompt runs to max_tokens, no stop token),
    // so the others join its batch while it runs.
    let long_expected = generate(&["--prompt", "今天", "--max-new-tokens", "600"]);
    assert_eq!(finish(&long_expected), "length");
    let long = json!({"model": "tiny", "prompt": "今天", "temperature": 0, "max_tokens": 600, "stream": true});
    let mut long_response = agent()
        .post(&format!("{}/v1/completions", server.url))
        .header("content-type", "application/json")
        .send(&long.to_string())
        .unwrap();
    let mut long_stream = BufReader::new(long_response.body_mut().as_reader());
    let mut first = String::new();
    long_stream.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: "), "{first}");
    let answers: Vec<(String, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(body, _, stream)| {
                let server = &server;
                scope.spawn(move || {
                    if *stream {
                        let mut body = body.clone();
                        body["stream"] = true.into();
                        let (text, reason, _) =
                            read_chat_stream(&server.stream("/v1/chat/completions", &body));
                        (text, reason)
                    } else {
                        let (status, answer) = server.post_json("/v1/chat/completions", body);
                        assert_eq!(status, 200, "{answer}");
                        let choice = &answer["choices"][0];
                        (
                            choice["message"]["content"].as_str().unwrap().to_string(),
                            choice["finish_reason"].as_str().unwrap().to_string(),
                        )
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ((text, reason), expected)) in answers.iter().zip(&expected).enumerate() {
        assert_eq!(text, expected["text"].as_str().unwrap(), "request {i}");
        assert_eq!(reason, finish(expected), "request {i}");
    }
    // The long completion, read to its end, is right too.
    let mut text =
        serde_json::from_str::<Value>(&first["data: ".len()..]).unwrap()["choices"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
    for line in long_stream.lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        text.push_str(chunk["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(text, long_expected["text"].as_str().unwrap());
    // They ran together: the log names a batch of all five.
    let batched = server.logged("in a batch of up to 5");
    assert!(!batched.is_empty(), "{:?}", server.logged("tokens"));
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    // No --model-name: the model is named after the checkpoint directory.
    let server = Server::start(&[]);
    let (_, models) = server.get("/v1/models");
    assert_eq!(models["data"][0]["id"], "step-00000002");
    let good = json!({
        "model": "step-00000002",
        "messages": [{"role": "user", "content": "今天"}],
        "temperature": 0,
        "max_tokens": 4,
    });
    let still_up = |after: &str| {
        let (status, answer) = server.post_json("/v1/chat/completions", &good);
        assert_eq!(status, 200, "after {after}: {answer}");
        assert_eq!(
            answer["usage"]["completion_tokens"], 4,
            "after {after}: {answer}"
        );
    };
    let error_of = |status: u16, answer: &Value, expected: u16, what: &str| -> Value {
        assert_eq!(status, expected, "{what}: {answer}");
        let error = &answer["error"];
        for field in ["message", "type", "param", "code"] {
            assert!(
                error.get(field).is_some(),
                "{what}: no `{field}` in {answer}"
            );
        }
        assert!(!error["message"].as_str().unwrap().is_empty());
        still_up(what);
        error.clone()
    };

    let (status, answer) = server.post("/v1/chat/completions", "{\"model\": \"step-00000002\", ");
    let error = error_of(status, &answer, 400, "malformed JSON");
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "invalid_json");

    let (status, answer) = server.post("/v1/completions", "{\"model\": \"step-00000002\"}");
    let error = error_of(status, &answer, 400, "a missing prompt");
    assert_eq!(error["param"], "prompt");
    let (status, answer) = server.post("/v1/chat/completions", "{\"messages\": []}");
    let error = error_of(status, &answer, 400, "a missing model");
    assert_eq!(error["param"], "model");

    let mut other = good.clone();
    other["model"] = "gpt-4o".into();
    let (status, answer) = server.post_json("/v1/chat/completions", &other);
    let error = error_of(status, &answer, 404, "an unknown model");
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(server.get("/v1/models/gpt-4o").0, 404);

    // A body over the 1 MiB limit.
    let mut huge = good.clone();
    huge["messages"][0]["content"] = "长".repeat(400_000).into();
    let (status, answer) = server.post_json("/v1/chat/completions", &huge);
    let error = error_of(status, &answer, 413, "an oversized body");
    assert_eq!(error["code"], "request_too_large");

    // A prompt over the model's context of 32768 tokens (but under the body limit).
    let mut long = good.clone();
    long["messages"][0]["content"] = (0..9000)
        .map(|i| format!("{i} "))
        .collect::<String>()
        .into();
    let (status, answer) = server.post_json("/v1/chat/completions", &long);
    let error = error_of(status, &answer, 400, "a prompt over the context");
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(error["param"], "messages");

    for (field, value, what) in [
        ("n", json!(2), "n = 2"),
        ("temperature", json!(-1), "a negative temperature"),
        ("top_p", json!(0), "top_p 0"),
        ("max_tokens", json!(0), "max_tokens 0"),
        ("stop", json!(5), "a stop that is a number"),
        (
            "messages",
            json!([{"role": "tool", "content": "x"}]),
            "a tool message",
        ),
        ("messages", json!([]), "no messages"),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        let (status, answer) = server.post_json("/v1/chat/completions", &bad);
        let error = error_of(status, &answer, 400, what);
        assert_eq!(error["type"], "invalid_request_error", "{what}");
    }
    let mut prompts = json!({"model": "step-00000002", "prompt": ["a", "b"]});
    let (status, answer) = server.post_json("/v1/completions", &prompts);
    error_of(status, &answer, 400, "two prompts");
    prompts["prompt"] = "".into();
    let (status, answer) = server.post_json("/v1/completions", &prompts);
    error_of(status, &answer, 400, "an empty prompt");

    let (status, answer) = server.get("/v1/nothing");
    error_of(status, &answer, 404, "an unknown path");
    let (status, answer) = server.get("/v1/chat/completions");
    error_of(status, &answer, 405, "GET on a POST endpoint");

    // A client that goes away in the middle of a stream: its sequence is dropped.
    {
        let mut streamed = good.clone();
        streamed["stream"] = true.into();
        streamed["max_tokens"] = 2000.into();
        let mut response = agent()
            .post(&format!("{}/v1/chat/completions", server.url))
            .header("content-type", "application/json")
            .send(&streamed.to_string())
            .unwrap();
        let mut reader = BufReader::new(response.body_mut().as_reader());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert!(first.starts_with("data: "), "{first}");
    }
    still_up("a client that went away");
}

#[test]
fn a_full_queue_answers_503() {
    // One sequence at a time and one waiting: a third request finds the queue full.
    let server = Server::start(&["--model-name", "tiny", "--batch", "1", "--queue", "1"]);
    // Greedy on this prompt runs to the end of the context (checked: no stop token), so
    // the first request holds the batch until it is dropped.
    let expected = generate(&["--prompt", "今天", "--max-new-tokens", "2000"]);
    assert_eq!(finish(&expected), "length", "{}", expected["stop_reason"]);
    let long = json!({
        "model": "tiny",
        "prompt": "今天",
        "temperature": 0,
        "max_tokens": 2000,
        "stream": true,
    });
    let open = |body: &Value| {
        let response = agent()
            .post(&format!("{}/v1/completions", server.url))
            .header("content-type", "application/json")
            .send(&body.to_string())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        BufReader::new(response.into_body().into_reader())
    };
    // The first request is running once its first text arrives.
    let mut running = open(&long);
    let mut first = String::new();
    running.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: "), "{first}");
    // The second is queued once its answer has started (its headers came back).
    let waiting = open(&long);
    let (status, answer) = server.post_json("/v1/completions", &long);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "queue_full");
    assert_eq!(answer["error"]["type"], "server_error");
    // Both go away: the worker drops them at its next step, and serves the next request
    // (which may find the queue full until then).
    drop(running);
    drop(waiting);
    let quick = json!({"model": "tiny", "prompt": "今天", "temperature": 0, "max_tokens": 3});
    let mut tries = 0;
    loop {
        let (status, answer) = server.post_json("/v1/completions", &quick);
        tries += 1;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(tries < 100, "the queue stayed full after its clients left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_a_gpu_it_cannot_open_and_its_help_names_its_flags() {
    let out = Command::new(STEEL)
        .arg("serve")
        .args(model_args())
        .args(["--device", "cuda", "--port", "0"])
        .output()
        .unwrap();
    // Here there is no GPU (or no `cuda` feature): refused, saying why.
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    let no_gpu = if cfg!(feature = "cuda") {
        "no CUDA driver found"
    } else {
        "built without the `cuda` feature"
    };
    assert!(error.contains(no_gpu), "{error}");
    let help = Command::new(STEEL)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--checkpoint",
        "--tokenizer",
        "--host",
        "--port",
        "--model-name",
        "--batch",
        "--queue",
        "--max-request-bytes",
        "--device",
    ] {
        assert!(help.contains(flag), "`steel serve --help` lacks {flag}");
    }
}
