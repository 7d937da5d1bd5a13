//! Offline speech: PocketSphinx (English recognition) and eSpeak NG (speech), run as the
//! Debian packages' command-line programs.

use std::{
    collections::HashSet,
    io::Write,
    process::Stdio,
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use flow_voice::Language;
use tokio::{io::AsyncWriteExt, process::Command};

use super::{Audio, AudioFormat, Hints, Speech, SpeechError, SpeechToText, TextToSpeech};

/// Longest a local speech program may run for one command.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The pronunciation dictionary of the `pocketsphinx-en-us` package.
const DICTIONARY: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";

/// PocketSphinx, constrained by a JSGF grammar of Flow's commands and the tenant's names.
pub struct Sphinx {
    program: String,
    /// Words PocketSphinx can pronounce: a name outside it would make the grammar fail.
    dictionary: Arc<OnceLock<HashSet<String>>>,
}

impl Sphinx {
    /// Runs `program` (`pocketsphinx_continuous`).
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            dictionary: Arc::new(OnceLock::new()),
        }
    }

    fn known_words(&self) -> &HashSet<String> {
        self.dictionary.get_or_init(|| {
            std::fs::read_to_string(DICTIONARY)
                .map(|text| {
                    text.lines()
                        .filter_map(|line| line.split_whitespace().next())
                        .filter(|word| !word.contains('('))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// The hint names PocketSphinx can say, lower-case.
    fn sayable(&self, names: &[String]) -> Vec<String> {
        let known = self.known_words();
        names
            .iter()
            .map(|name| name.to_lowercase())
            .filter(|name| {
                let mut words = name.split_whitespace().peekable();
                words.peek().is_some() && words.all(|w| known.contains(w))
            })
            .collect()
    }
}

/// FFT size PocketSphinx needs for a 25.6 ms frame at `sample_rate`.
fn fft_size(sample_rate: u32) -> u32 {
    ((f64::from(sample_rate) * 0.025_625).ceil() as u32).next_power_of_two()
}

fn temp_file(suffix: &str, bytes: &[u8]) -> Result<tempfile::NamedTempFile, SpeechError> {
    let mut file = tempfile::Builder::new()
        .prefix("flow-speech-")
        .suffix(suffix)
        .tempfile()
        .map_err(|e| SpeechError::Provider(format!("temporary file: {e}")))?;
    file.write_all(bytes)
        .map_err(|e| SpeechError::Provider(format!("temporary file: {e}")))?;
    Ok(file)
}

async fn run(mut command: Command, input: Option<&[u8]>) -> Result<Vec<u8>, SpeechError> {
    let program = format!("{:?}", command.as_std().get_program());
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SpeechError::Provider(format!("{program} could not start: {e}")))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input)
            .await
            .map_err(|e| SpeechError::Provider(format!("{program}: {e}")))?;
    }
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SpeechError::Provider(format!("{program} took longer than {TIMEOUT:?}")))?
        .map_err(|e| SpeechError::Provider(format!("{program}: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        return Err(SpeechError::Provider(format!("{program} failed: {tail}")));
    }
    Ok(output.stdout)
}

#[async_trait]
impl SpeechToText for Sphinx {
    async fn transcribe(
        &self,
        audio: &Audio,
        language: Language,
        hints: &Hints,
    ) -> Result<String, SpeechError> {
        if language != Language::En {
            return Err(SpeechError::Unsupported(
                "local speech recognition has no Danish model".into(),
            ));
        }
        let AudioFormat::Wav { sample_rate } = audio.format else {
            return Err(SpeechError::Unsupported(
                "local speech recognition reads WAV audio only".into(),
            ));
        };
        let grammar = flow_voice::jsgf_grammar(&self.sayable(&hints.names));
        let grammar_file = temp_file(".gram", grammar.as_bytes())?;
        let audio_file = temp_file(".wav", &audio.bytes)?;
        let mut command = Command::new(&self.program);
        command
            .arg("-infile")
            .arg(audio_file.path())
            .arg("-jsgf")
            .arg(grammar_file.path())
            .args(["-samprate", &sample_rate.to_string()])
            .args(["-nfft", &fft_size(sample_rate).to_string()])
            .args(["-logfn", "/dev/null"]);
        let stdout = run(command, None).await?;
        let text = String::from_utf8_lossy(&stdout)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            return Err(SpeechError::NothingRecognised);
        }
        Ok(text)
    }
}

/// eSpeak NG, answering with 16-bit WAV.
pub struct Espeak {
    program: String,
}

impl Espeak {
    /// Runs `program` (`espeak-ng`).
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
        }
    }
}

#[async_trait]
impl TextToSpeech for Espeak {
    async fn speak(&self, text: &str, language: Language) -> Result<Speech, SpeechError> {
        let voice = match language {
            Language::Da => "da",
            Language::En => "en-us",
        };
        let mut command = Command::new(&self.program);
        // Text on stdin, never as an argument: it cannot be taken for an option.
        command.args(["-v", voice, "--stdout", "--stdin"]);
        let bytes = run(command, Some(text.as_bytes())).await?;
        if bytes.is_empty() {
            return Err(SpeechError::Provider("espeak-ng produced no audio".into()));
        }
        Ok(Speech {
            bytes,
            content_type: "audio/wav".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_fits_a_frame_at_common_rates() {
        assert_eq!(fft_size(8_000), 256);
        assert_eq!(fft_size(16_000), 512);
        assert_eq!(fft_size(22_050), 1024);
        assert_eq!(fft_size(44_100), 2048);
        assert_eq!(fft_size(48_000), 2048);
    }
}
