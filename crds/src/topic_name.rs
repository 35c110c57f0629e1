use thiserror::Error;

/// Kafka's limit on topic name length (`Topic.MAX_NAME_LENGTH`).
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a string is not a legal Kafka topic name (mirrors Kafka's `Topic.validate`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name '{0}' is not allowed")]
    Reserved(String),
    #[error("topic name is {len} characters long; Kafka allows at most {MAX_TOPIC_NAME_LEN}")]
    TooLong { len: usize },
    #[error(
        "topic name '{name}' contains '{ch}'; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    IllegalChar { name: String, ch: char },
}

/// Checks a topic name with the same rules as the Kafka broker.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Reserved(name.to_owned()));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::IllegalChar {
            name: name.to_owned(),
            ch,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_legal_names() {
        for name in [
            "orders",
            "orders.v1",
            "a_b-c",
            "__encryption_keys",
            &"x".repeat(249),
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_illegal_names_with_the_reason() {
        let cases: &[(&str, TopicNameError)] = &[
            ("", TopicNameError::Empty),
            (".", TopicNameError::Reserved(".".into())),
            ("..", TopicNameError::Reserved("..".into())),
            (
                "a/b",
                TopicNameError::IllegalChar {
                    name: "a/b".into(),
                    ch: '/',
                },
            ),
            (
                "ünicode",
                TopicNameError::IllegalChar {
                    name: "ünicode".into(),
                    ch: 'ü',
                },
            ),
            (
                "with space",
                TopicNameError::IllegalChar {
                    name: "with space".into(),
                    ch: ' ',
                },
            ),
        ];
        for (name, want) in cases {
            assert_eq!(validate_topic_name(name).as_ref(), Err(want), "{name:?}");
        }
        assert_eq!(
            validate_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong { len: 250 })
        );
    }
}
