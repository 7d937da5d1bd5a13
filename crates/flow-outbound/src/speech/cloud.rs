//! Cloud speech through the providers' real HTTP APIs: an OpenAI-compatible API
//! (`/audio/transcriptions`, `/audio/speech`; also self-hosted Whisper servers) and
//! ElevenLabs text-to-speech.

use std::time::Duration;

use async_trait::async_trait;
use flow_voice::Language;
use serde::Deserialize;
use serde_json::json;

use super::SpeechConfig;
use super::{Audio, AudioFormat, Hints, Speech, SpeechError, SpeechToText, TextToSpeech};

fn client(timeout_secs: u64) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs))
        .build()?)
}

fn provider_error(e: reqwest::Error) -> SpeechError {
    SpeechError::Provider(e.without_url().to_string())
}

/// Reads a provider's answer, turning HTTP errors into [`SpeechError::Provider`].
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, SpeechError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(SpeechError::Provider(format!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )))
}

/// An OpenAI-compatible speech API.
pub struct OpenAiSpeech {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    stt_model: String,
    tts_model: String,
    voice: String,
}

impl OpenAiSpeech {
    /// The API at `base_url` (e.g. `https://api.openai.com/v1`).
    pub fn new(base_url: &str, config: &SpeechConfig) -> anyhow::Result<Self> {
        Ok(Self {
            http: client(config.timeout_secs)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: config.speech_api_key.clone(),
            stt_model: config.speech_stt_model.clone(),
            tts_model: config.speech_tts_model.clone(),
            voice: config.speech_tts_voice.clone(),
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

#[async_trait]
impl SpeechToText for OpenAiSpeech {
    async fn transcribe(
        &self,
        audio: &Audio,
        language: Language,
        _hints: &Hints,
    ) -> Result<String, SpeechError> {
        let file_name = match audio.format {
            AudioFormat::Wav { .. } => "command.wav",
            AudioFormat::WebmOpus => "command.webm",
        };
        let file = reqwest::multipart::Part::bytes(audio.bytes.clone())
            .file_name(file_name)
            .mime_str(audio.format.mime())
            .map_err(provider_error)?;
        let form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", self.stt_model.clone())
            .text("language", language.as_str())
            .text("response_format", "json");
        let response = self
            .post("/audio/transcriptions")
            .multipart(form)
            .send()
            .await
            .map_err(provider_error)?;
        let transcription: Transcription = checked(response)
            .await?
            .json()
            .await
            .map_err(provider_error)?;
        let text = transcription.text.trim().to_owned();
        if text.is_empty() {
            return Err(SpeechError::NothingRecognised);
        }
        Ok(text)
    }
}

#[async_trait]
impl TextToSpeech for OpenAiSpeech {
    async fn speak(&self, text: &str, _language: Language) -> Result<Speech, SpeechError> {
        let response = self
            .post("/audio/speech")
            .json(&json!({
                "model": self.tts_model,
                "input": text,
                "voice": self.voice,
                "response_format": "wav",
            }))
            .send()
            .await
            .map_err(provider_error)?;
        speech_from(checked(response).await?, "audio/wav").await
    }
}

async fn speech_from(
    response: reqwest::Response,
    default_type: &str,
) -> Result<Speech, SpeechError> {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default_type)
        .to_owned();
    let bytes = response.bytes().await.map_err(provider_error)?.to_vec();
    if bytes.is_empty() {
        return Err(SpeechError::Provider("the provider sent no audio".into()));
    }
    Ok(Speech {
        bytes,
        content_type,
    })
}

/// ElevenLabs text-to-speech.
pub struct ElevenLabs {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    voice_id: String,
    model: String,
}

impl ElevenLabs {
    /// From `elevenlabs_*` settings.
    pub fn new(config: &SpeechConfig) -> anyhow::Result<Self> {
        Ok(Self {
            http: client(config.timeout_secs)?,
            base_url: config.elevenlabs_url.trim_end_matches('/').to_owned(),
            api_key: config
                .elevenlabs_api_key
                .clone()
                .ok_or_else(|| anyhow::anyhow!("elevenlabs_api_key is not set"))?,
            voice_id: config.elevenlabs_voice_id.clone(),
            model: config.elevenlabs_model.clone(),
        })
    }
}

#[async_trait]
impl TextToSpeech for ElevenLabs {
    async fn speak(&self, text: &str, language: Language) -> Result<Speech, SpeechError> {
        let response = self
            .http
            .post(format!(
                "{}/v1/text-to-speech/{}",
                self.base_url, self.voice_id
            ))
            .query(&[("output_format", "mp3_44100_128")])
            .header("xi-api-key", &self.api_key)
            .header(reqwest::header::ACCEPT, "audio/mpeg")
            .json(&json!({
                "text": text,
                "model_id": self.model,
                "language_code": language.as_str(),
            }))
            .send()
            .await
            .map_err(provider_error)?;
        speech_from(checked(response).await?, "audio/mpeg").await
    }
}
