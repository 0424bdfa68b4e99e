//! `--expect`: what the server should answer, parsed with the same words as `udpd serve --handler`.

use crate::handler::HandlerSpec;

/// What the server is expected to answer (`--expect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The request, unchanged.
    Echo,
    /// The request with ASCII letters upper-cased.
    Upper,
    /// Exactly these bytes, whatever the request.
    Ack(Vec<u8>),
    /// No reply at all.
    None,
}

impl Expect {
    /// Parses `echo`, `upper`, `ack`, `ack:TEXT` or `none` (the server's `--handler` names, with
    /// `discard` also meaning `none`).
    pub fn parse(text: &str) -> Result<Expect, String> {
        if text == "none" {
            return Ok(Expect::None);
        }
        match text.parse::<HandlerSpec>() {
            Ok(HandlerSpec::Echo) => Ok(Expect::Echo),
            Ok(HandlerSpec::Upper) => Ok(Expect::Upper),
            Ok(HandlerSpec::Ack(reply)) => Ok(Expect::Ack(reply)),
            Ok(HandlerSpec::Discard) => Ok(Expect::None),
            // `udpd load` does not speak sockperf's wire format: drive `--handler sockperf` with sockperf.
            Ok(HandlerSpec::Sockperf) | Err(_) => Err(format!(
                "unknown --expect {text:?}: use echo, upper, ack, ack:TEXT or none"
            )),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Expect::Echo => "echo".into(),
            Expect::Upper => "upper".into(),
            Expect::Ack(text) => format!("ack:{}", String::from_utf8_lossy(text)),
            Expect::None => "none".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expect() {
        assert_eq!(Expect::parse("echo"), Ok(Expect::Echo));
        assert_eq!(Expect::parse("ack"), Ok(Expect::Ack(b"ACK".to_vec())));
        assert_eq!(Expect::parse("ack:ok!"), Ok(Expect::Ack(b"ok!".to_vec())));
        assert_eq!(Expect::parse("ack:"), Ok(Expect::Ack(Vec::new())));
        assert!(Expect::parse("loud").is_err());
    }

    #[test]
    fn none_and_discard_mean_no_reply_and_errors_are_one_line() {
        assert_eq!(Expect::parse("none"), Ok(Expect::None));
        assert_eq!(Expect::parse("discard"), Ok(Expect::None));
        assert_eq!(Expect::parse("upper"), Ok(Expect::Upper));
        assert_eq!(
            Expect::parse("ack").unwrap(),
            Expect::Ack(crate::handler::DEFAULT_ACK.to_vec())
        );
        let error = Expect::parse("shout\nloud").unwrap_err();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.contains("none"), "{error}");
        for expect in [Expect::Echo, Expect::Upper, Expect::None] {
            assert_eq!(Expect::parse(&expect.name()), Ok(expect));
        }
    }
}
