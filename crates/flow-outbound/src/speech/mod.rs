//! Speech in and out of the voice agent, behind two provider traits chosen by config.
//!
//! Local and offline by default: PocketSphinx for English speech-to-text, constrained by a
//! grammar of Flow's commands and the tenant's names (open-vocabulary recognition fails on
//! short commands), and eSpeak NG for Danish and English speech. Cloud providers speak
//! their real HTTP APIs (`cloud.rs`). Danish audio needs a cloud provider: without one it
//! is refused with an error that says so, and the caller falls back to text.

mod cloud;
mod local;

use std::sync::Arc;

use async_trait::async_trait;
use flow_voice::Language;

pub use cloud::{ElevenLabs, OpenAiSpeech};
pub use local::{Espeak, Sphinx};

/// Uploaded audio, checked at the edge.
#[derive(Clone, Debug)]
pub struct Audio {
    pub bytes: Vec<u8>,
    pub format: AudioFormat,
    /// Known for WAV (from its header).
    pub duration_secs: Option<f64>,
}

/// The audio containers Flow accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioFormat {
    /// 16-bit PCM WAV, mono.
    Wav { sample_rate: u32 },
    /// WebM or Ogg with Opus, as browsers record it.
    WebmOpus,
}

impl AudioFormat {
    /// The MIME type to send it to a provider with.
    pub fn mime(self) -> &'static str {
        match self {
            AudioFormat::Wav { .. } => "audio/wav",
            AudioFormat::WebmOpus => "audio/webm",
        }
    }
}

/// Speech the agent answers with.
#[derive(Clone, Debug)]
pub struct Speech {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

/// Why speech did not work; each becomes a clear 4xx/5xx for the caller.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// This provider cannot handle the language or format; another could.
    #[error("{0}")]
    Unsupported(String),
    /// Nothing intelligible was recognised.
    #[error("no speech was recognised")]
    NothingRecognised,
    /// The provider failed or could not be reached.
    #[error("speech provider failed: {0}")]
    Provider(String),
}

/// Words the recogniser should expect besides the commands (the tenant's lead names).
#[derive(Clone, Debug, Default)]
pub struct Hints {
    pub names: Vec<String>,
}

/// Speech to text.
#[async_trait]
pub trait SpeechToText: Send + Sync {
    /// Transcribes `audio` spoken in `language`.
    async fn transcribe(
        &self,
        audio: &Audio,
        language: Language,
        hints: &Hints,
    ) -> Result<String, SpeechError>;
}

/// Text to speech.
#[async_trait]
pub trait TextToSpeech: Send + Sync {
    /// Speaks `text` in `language`.
    async fn speak(&self, text: &str, language: Language) -> Result<Speech, SpeechError>;
}

type Recogniser = Option<Arc<dyn SpeechToText>>;

/// Which providers speak and listen, and how to reach them.
#[derive(Clone)]
pub struct SpeechConfig {
    /// `local`, `openai` or `none`.
    pub speech_to_text: String,
    /// `local`, `openai`, `elevenlabs` or `none`.
    pub text_to_speech: String,
    pub speech_api_url: Option<String>,
    pub speech_api_key: Option<String>,
    pub speech_stt_model: String,
    pub speech_tts_model: String,
    pub speech_tts_voice: String,
    pub elevenlabs_url: String,
    pub elevenlabs_api_key: Option<String>,
    pub elevenlabs_voice_id: String,
    pub elevenlabs_model: String,
    pub sphinx_bin: String,
    pub espeak_bin: String,
    /// Longest audio accepted.
    pub max_audio_secs: u64,
    /// How long a cloud provider may take.
    pub timeout_secs: u64,
}

impl std::fmt::Debug for SpeechConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[redacted]");
        f.debug_struct("SpeechConfig")
            .field("speech_to_text", &self.speech_to_text)
            .field("text_to_speech", &self.text_to_speech)
            .field("speech_api_url", &self.speech_api_url)
            .field("speech_api_key", &redacted(&self.speech_api_key))
            .field("elevenlabs_url", &self.elevenlabs_url)
            .field("elevenlabs_api_key", &redacted(&self.elevenlabs_api_key))
            .field("max_audio_secs", &self.max_audio_secs)
            .finish_non_exhaustive()
    }
}

/// The configured providers.
#[derive(Clone)]
pub struct SpeechServices {
    /// The primary recogniser.
    stt: Recogniser,
    /// Where audio the primary one cannot handle goes (Danish, WebM), if configured.
    stt_fallback: Recogniser,
    tts: Option<Arc<dyn TextToSpeech>>,
    /// Longest audio accepted.
    pub max_audio_secs: u64,
}

impl SpeechServices {
    /// Providers as `config` chooses them.
    pub fn from_config(config: &SpeechConfig) -> anyhow::Result<Self> {
        let cloud = config
            .speech_api_url
            .as_ref()
            .map(|url| OpenAiSpeech::new(url, config))
            .transpose()?
            .map(Arc::new);
        let local_stt: Arc<dyn SpeechToText> = Arc::new(Sphinx::new(&config.sphinx_bin));
        let (stt, stt_fallback): (Recogniser, Recogniser) = match config.speech_to_text.as_str() {
            "local" => (
                Some(local_stt),
                cloud.clone().map(|c| c as Arc<dyn SpeechToText>),
            ),
            "openai" => (cloud.clone().map(|c| c as Arc<dyn SpeechToText>), None),
            _ => (None, None),
        };
        let tts: Option<Arc<dyn TextToSpeech>> = match config.text_to_speech.as_str() {
            "local" => Some(Arc::new(Espeak::new(&config.espeak_bin))),
            "openai" => cloud.map(|c| c as Arc<dyn TextToSpeech>),
            "elevenlabs" => Some(Arc::new(ElevenLabs::new(config)?)),
            _ => None,
        };
        Ok(Self {
            stt,
            stt_fallback,
            tts,
            max_audio_secs: config.max_audio_secs,
        })
    }

    /// Transcribes with the primary recogniser, or the fallback where the primary cannot.
    pub async fn transcribe(
        &self,
        audio: &Audio,
        language: Language,
        hints: &Hints,
    ) -> Result<String, SpeechError> {
        let Some(stt) = &self.stt else {
            return Err(SpeechError::Unsupported(
                "speech recognition is switched off (speech_to_text = \"none\"); send the text instead".into(),
            ));
        };
        match stt.transcribe(audio, language, hints).await {
            Err(SpeechError::Unsupported(reason)) => match &self.stt_fallback {
                Some(fallback) => fallback.transcribe(audio, language, hints).await,
                None => Err(SpeechError::Unsupported(format!(
                    "{reason}; configure speech_api_url for it, or send the text instead"
                ))),
            },
            other => other,
        }
    }

    /// Speaks `text`; `None` when speech output is switched off.
    pub async fn speak(
        &self,
        text: &str,
        language: Language,
    ) -> Result<Option<Speech>, SpeechError> {
        match &self.tts {
            Some(tts) => tts.speak(text, language).await.map(Some),
            None => Ok(None),
        }
    }
}

/// Checks an upload: its declared type, that it is what it says, and its length.
pub fn check_audio(content_type: &str, bytes: Vec<u8>, max_secs: u64) -> Result<Audio, AudioError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if bytes.is_empty() {
        return Err(AudioError::Invalid(String::from("the audio is empty")));
    }
    match mime.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => {
            let reader = hound::WavReader::new(std::io::Cursor::new(&bytes)).map_err(|e| {
                AudioError::Invalid(format!("the audio is not a readable WAV file: {e}"))
            })?;
            let spec = reader.spec();
            if spec.channels != 1
                || spec.bits_per_sample != 16
                || spec.sample_format != hound::SampleFormat::Int
            {
                return Err(AudioError::Invalid(String::from(
                    "WAV audio must be 16-bit PCM, mono",
                )));
            }
            if !(8_000..=48_000).contains(&spec.sample_rate) {
                return Err(AudioError::Invalid(String::from(
                    "WAV sample rate must be 8-48 kHz",
                )));
            }
            let duration = f64::from(reader.duration()) / f64::from(spec.sample_rate);
            if duration < 0.1 {
                return Err(AudioError::Invalid(
                    "the audio is too short to hold a command".into(),
                ));
            }
            if duration > max_secs as f64 {
                return Err(too_long(max_secs));
            }
            Ok(Audio {
                bytes,
                format: AudioFormat::Wav {
                    sample_rate: spec.sample_rate,
                },
                duration_secs: Some(duration),
            })
        }
        "audio/webm" | "audio/ogg" => {
            // EBML (WebM) or OggS magic: enough to refuse files that are something else.
            let magic_ok =
                bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) || bytes.starts_with(b"OggS");
            if !magic_ok {
                return Err(AudioError::Invalid(String::from(
                    "the audio is not WebM or Ogg",
                )));
            }
            // Opus at browser bitrates is ~4 KB/s: a generous bound without decoding.
            if bytes.len() as u64 > max_secs * 16_000 {
                return Err(too_long(max_secs));
            }
            Ok(Audio {
                bytes,
                format: AudioFormat::WebmOpus,
                duration_secs: None,
            })
        }
        _ => Err(AudioError::UnsupportedType),
    }
}

fn too_long(max_secs: u64) -> AudioError {
    AudioError::TooLong { max_secs }
}

/// Why an upload is not audio Flow can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// Declared as a supported type, but not readable as one, or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// Longer than the limit.
    #[error("audio is limited to {max_secs} seconds per command")]
    TooLong { max_secs: u64 },
    /// Not a type Flow accepts.
    #[error("send audio/wav (16-bit PCM mono), audio/webm or audio/ogg, or JSON with text")]
    UnsupportedType,
}
