//! Alertmanager label matchers (`name="value"`, `!=`, `=~`, `!~`), parsed with the grammar of
//! Alertmanager's UTF-8 matcher parser: names and values are either double-quoted strings with Go
//! escapes (`\"`, `\\`, `\n`, `\t`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`, octal) or unquoted UTF-8 without
//! whitespace or any of `{}!=~,\"'` and backquote. One entry may hold several matchers
//! (`{a="1",b="2"}`, braces optional, trailing comma allowed), as in Alertmanager's config.
//! Regexes are fully anchored (`^(?:re)$`) and a missing label matches as the empty string.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// The four Alertmanager operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One parsed matcher. Regex matchers carry their compiled, anchored regex.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    /// Always quoted, so the output parses back to the same matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            quote(&self.name),
            self.op.as_str(),
            quote(&self.value)
        )
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Matcher {
    /// Builds a matcher; regex values are compiled anchored, like Alertmanager's `^(?:re)$`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, String> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err("empty label name".into());
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                // NB: compiled bare first so the error quotes the user's regex, not our anchors.
                Regex::new(&value)
                    .map_err(|error| format!("invalid regex `{value}`: {}", describe(&error)))?;
                Some(
                    Regex::new(&format!("^(?:{value})$")).map_err(|error| {
                        format!("invalid regex `{value}`: {}", describe(&error))
                    })?,
                )
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value, unquoted; for regex operators the regex as written (without the anchors).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the labels satisfy this matcher; a missing label is the empty string.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => actual == self.value,
            (MatchOp::NotEqual, _) => actual != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(actual),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(actual),
            // NB: `new` always compiles regex operators; unreachable in practice, and a matcher
            // that cannot decide must not page.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// regex's syntax errors span several lines with a caret diagram; a condition message is one
/// line, so keep the `error: ...` part.
fn describe(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().last().unwrap_or("").trim().to_string())
}

/// Why a matcher string did not parse: the input, the 0-based character columns, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: {message} (at character {})", column + 1)]
pub struct MatcherError {
    pub input: String,
    /// 0-based character offset of the problem.
    pub column: usize,
    pub message: String,
}

/// All matchers must match (an empty set matches everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Parses every entry of `spec.alertmanager.matchers`; errors carry the entry's index.
    pub fn parse_all(entries: &[String]) -> Result<Self, Vec<(usize, MatcherError)>> {
        let mut matchers = Vec::new();
        let mut errors = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse(entry) {
                Ok(parsed) => matchers.extend(parsed),
                Err(error) => errors.push((index, error)),
            }
        }
        if errors.is_empty() {
            Ok(Self(matchers))
        } else {
            Err(errors)
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|matcher| matcher.matches(labels))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    OpenBrace,
    CloseBrace,
    Comma,
    Op(MatchOp),
    Quoted(String),
    Unquoted(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::OpenBrace => "'{'".into(),
            Token::CloseBrace => "'}'".into(),
            Token::Comma => "','".into(),
            Token::Op(op) => format!("operator '{}'", op.as_str()),
            Token::Quoted(text) | Token::Unquoted(text) => format!("{text:?}"),
        }
    }
}

fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

struct Lexer<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn error(&self, column: usize, message: impl Into<String>) -> MatcherError {
        MatcherError {
            input: self.input.to_string(),
            column,
            message: message.into(),
        }
    }

    /// Every token with its starting column.
    fn tokens(mut self) -> Result<Vec<(usize, Token)>, MatcherError> {
        let mut tokens = Vec::new();
        while self.pos < self.chars.len() {
            let start = self.pos;
            let c = self.chars[start];
            let token = match c {
                c if c.is_whitespace() => {
                    self.pos += 1;
                    continue;
                }
                '{' => {
                    self.pos += 1;
                    Token::OpenBrace
                }
                '}' => {
                    self.pos += 1;
                    Token::CloseBrace
                }
                ',' => {
                    self.pos += 1;
                    Token::Comma
                }
                '=' | '!' => self.operator()?,
                '"' => self.quoted()?,
                c if !is_reserved(c) => {
                    while self.pos < self.chars.len() && !is_reserved(self.chars[self.pos]) {
                        self.pos += 1;
                    }
                    Token::Unquoted(self.chars[start..self.pos].iter().collect())
                }
                c => {
                    return Err(self.error(
                        start,
                        format!(
                            "unexpected {c:?}; put values that contain spaces or any of {{}}!=~,\\\"'` in double quotes"
                        ),
                    ))
                }
            };
            tokens.push((start, token));
        }
        Ok(tokens)
    }

    fn operator(&mut self) -> Result<Token, MatcherError> {
        let start = self.pos;
        let first = self.chars[start];
        let second = self.chars.get(start + 1).copied();
        let (op, len) = match (first, second) {
            ('=', Some('~')) => (MatchOp::Regex, 2),
            ('=', _) => (MatchOp::Equal, 1),
            ('!', Some('=')) => (MatchOp::NotEqual, 2),
            ('!', Some('~')) => (MatchOp::NotRegex, 2),
            _ => {
                return Err(self.error(
                    start,
                    "'!' must be followed by '=' or '~' (operators are =, !=, =~, !~)",
                ))
            }
        };
        self.pos += len;
        Ok(Token::Op(op))
    }

    fn quoted(&mut self) -> Result<Token, MatcherError> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        while self.pos < self.chars.len() {
            let c = self.chars[self.pos];
            self.pos += 1;
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                let body: String = self.chars[start + 1..self.pos - 1].iter().collect();
                return unquote(&body)
                    .map(Token::Quoted)
                    .map_err(|why| self.error(start, format!("invalid quoted string: {why}")));
            }
        }
        Err(self.error(start, "missing closing '\"'"))
    }
}

/// Go's `strconv.Unquote` for a double-quoted body: the escapes Alertmanager accepts.
fn unquote(body: &str) -> Result<String, String> {
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            return Err("a newline must be written as \\n".into());
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escape = chars.next().ok_or("trailing backslash")?;
        let simple = match escape {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            bytes.push(byte);
            continue;
        }
        let mut take = |count: usize, radix: u32| -> Result<u32, String> {
            let digits: String = (0..count).filter_map(|_| chars.next()).collect();
            if digits.chars().count() != count {
                return Err(format!("\\{escape} needs {count} digits"));
            }
            u32::from_str_radix(&digits, radix)
                .map_err(|_| format!("\\{escape}{digits} is not a valid escape"))
        };
        match escape {
            'x' => bytes.push(take(2, 16)? as u8),
            '0'..='7' => {
                let rest = take(2, 8)?;
                let value = escape.to_digit(8).unwrap_or(0) * 64 + rest;
                let byte = u8::try_from(value).map_err(|_| "octal escape above \\377")?;
                bytes.push(byte);
            }
            'u' | 'U' => {
                let code = take(if escape == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(code)
                    .ok_or_else(|| format!("\\{escape} escape {code:#x} is not a character"))?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => {
                return Err(format!(
                    "unknown escape \\{other} (use \\\\ for a backslash, \\\" for a quote)"
                ))
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| "escapes do not form valid UTF-8".to_string())
}

/// Parses one matcher entry: one or more matchers, optionally in braces, comma-separated.
pub fn parse(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let lexer = Lexer {
        input,
        chars: input.chars().collect(),
        pos: 0,
    };
    let end = lexer.chars.len();
    let error = |column: usize, message: String| MatcherError {
        input: input.to_string(),
        column,
        message,
    };
    let tokens = lexer.tokens()?;
    let mut rest = tokens.as_slice();
    let braced = matches!(rest.first(), Some((_, Token::OpenBrace)));
    if braced {
        rest = &rest[1..];
    }
    let mut matchers = Vec::new();
    loop {
        match rest {
            [] if braced => return Err(error(end, "missing closing '}'".into())),
            [] => break,
            [(_, Token::CloseBrace)] if braced => break,
            [(column, Token::CloseBrace), ..] if !braced => {
                return Err(error(*column, "'}' without an opening '{'".into()))
            }
            [(column, Token::CloseBrace), ..] => {
                return Err(error(*column, "unexpected input after '}'".into()))
            }
            _ => {}
        }
        let Some((name_column, name_token)) = rest.first() else {
            break;
        };
        let (name_column, name) = match name_token {
            Token::Quoted(text) | Token::Unquoted(text) => (*name_column, text.clone()),
            token => {
                return Err(error(
                    *name_column,
                    format!("expected a label name, found {}", token.describe()),
                ))
            }
        };
        let op = match rest.get(1) {
            Some((_, Token::Op(op))) => *op,
            Some((column, token)) => {
                return Err(error(
                    *column,
                    format!(
                        "expected an operator (=, !=, =~, !~) after {name:?}, found {}",
                        token.describe()
                    ),
                ))
            }
            None => {
                return Err(error(
                    end,
                    format!("expected an operator (=, !=, =~, !~) after {name:?}"),
                ))
            }
        };
        let value = match rest.get(2) {
            Some((_, Token::Quoted(text) | Token::Unquoted(text))) => text.clone(),
            Some((column, token)) => {
                return Err(error(
                    *column,
                    format!(
                        "expected a value after {name:?}{}, found {}",
                        op.as_str(),
                        token.describe()
                    ),
                ))
            }
            None => {
                return Err(error(
                    end,
                    format!(
                        "expected a value after {name:?}{} (use \"\" for the empty value)",
                        op.as_str()
                    ),
                ))
            }
        };
        let value_column = rest.get(2).map_or(end, |(column, _)| *column);
        let column = if name.is_empty() {
            name_column
        } else {
            value_column
        };
        matchers.push(Matcher::new(name, op, value).map_err(|message| error(column, message))?);
        rest = &rest[3..];
        match rest {
            [] => {}
            [(_, Token::Comma), tail @ ..] => rest = tail,
            [(_, Token::CloseBrace), ..] => {}
            [(column, token), ..] => {
                return Err(error(
                    *column,
                    format!(
                        "expected ',' or the end after a matcher, found {}; quote values that contain spaces or reserved characters",
                        token.describe()
                    ),
                ))
            }
        }
    }
    if matchers.is_empty() {
        return Err(error(0, "no matcher: write name=\"value\"".into()));
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(input: &str) -> (String, MatchOp, String) {
        let parsed = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(parsed.len(), 1, "{input}");
        (
            parsed[0].name.clone(),
            parsed[0].op,
            parsed[0].value.clone(),
        )
    }

    #[test]
    fn parses_alertmanager_examples() {
        use MatchOp::*;
        let table: &[(&str, &str, MatchOp, &str)] = &[
            ("{foo=bar}", "foo", Equal, "bar"),
            ("{foo=bar,}", "foo", Equal, "bar"),
            ("{foo!=bar}", "foo", NotEqual, "bar"),
            ("{foo=~[a-z]+}", "foo", Regex, "[a-z]+"),
            ("{foo!~[a-z]+}", "foo", NotRegex, "[a-z]+"),
            ("{foo=🙂}", "foo", Equal, "🙂"),
            ("{foo=🙂bar}", "foo", Equal, "🙂bar"),
            ("foo=bar", "foo", Equal, "bar"),
            ("foo=bar,", "foo", Equal, "bar"),
            ("foo!~[a-z]+", "foo", NotRegex, "[a-z]+"),
            ("{\"foo\"=\"bar\"}", "foo", Equal, "bar"),
            ("{\"foo\"=\"bar\",}", "foo", Equal, "bar"),
            ("{\"foo\"=~\"[a-z]+\"}", "foo", Regex, "[a-z]+"),
            ("{\"foo\"=\"🙂\"}", "foo", Equal, "🙂"),
            ("{\"foo\"=\"\\xf0\\x9f\\x99\\x82\"}", "foo", Equal, "🙂"),
            ("{\"foo\"=\"\\U0001f642\"}", "foo", Equal, "🙂"),
            ("{\"foo\"=\"bar\\n\"}", "foo", Equal, "bar\n"),
            ("{\"foo\"=\"bar\\t\"}", "foo", Equal, "bar\t"),
            ("{\"foo\"=\"\\\"bar\\\"\"}", "foo", Equal, "\"bar\""),
            ("{\"foo\"=\"bar\\\\\"}", "foo", Equal, "bar\\"),
            ("\"foo\"=\"bar\",", "foo", Equal, "bar"),
            ("severity=\"critical\"", "severity", Equal, "critical"),
            ("team=~\"sre|infra\"", "team", Regex, "sre|infra"),
            ("  severity  =  critical  ", "severity", Equal, "critical"),
            ("foo=\"\"", "foo", Equal, ""),
            ("foo=\"a b, c=d\"", "foo", Equal, "a b, c=d"),
            ("環境=\"本番\"", "環境", Equal, "本番"),
            ("{\"foo.bar\"=\"\\101\"}", "foo.bar", Equal, "A"),
        ];
        for (input, name, op, value) in table {
            assert_eq!(
                one(input),
                (name.to_string(), *op, value.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn one_entry_may_hold_several_matchers() {
        for input in [
            "{foo=bar,bar!=baz}",
            "{foo=\"bar\",bar!=\"baz\"}",
            "foo=bar,bar!=baz",
        ] {
            let parsed = parse(input).unwrap_or_default();
            assert_eq!(parsed.len(), 2, "{input}");
            assert_eq!(parsed[1].op, MatchOp::NotEqual);
            assert_eq!(parsed[1].value, "baz");
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let table: &[(&str, usize, &str)] = &[
            ("", 0, "no matcher"),
            ("{}", 0, "no matcher"),
            (",", 0, "expected a label name, found ','"),
            ("{,}", 1, "expected a label name"),
            ("{", 1, "missing closing '}'"),
            ("}", 0, "without an opening '{'"),
            ("foo=bar}", 7, "without an opening '{'"),
            ("{foo=bar", 8, "missing closing '}'"),
            ("{foo=bar\\n}", 8, "unexpected '\\\\'"),
            ("{foo=\"bar\\w\"}", 5, "unknown escape \\w"),
            ("{\"foo\"=\"\\xf0\\x9f\"}", 7, "valid UTF-8"),
            ("foo=\"bar", 4, "missing closing '\"'"),
            ("foo", 3, "expected an operator"),
            ("foo bar", 4, "expected an operator"),
            ("foo=", 4, "expected a value"),
            ("foo!bar", 3, "'!' must be followed"),
            ("foo=bar baz", 8, "expected ',' or the end"),
            ("foo=~\"(\"", 5, "invalid regex `(`: unclosed group"),
            ("=bar", 0, "expected a label name"),
            ("\"\"=bar", 0, "empty label name"),
            ("foo='bar'", 4, "unexpected '\\''"),
        ];
        for (input, column, message) in table {
            match parse(input) {
                Ok(parsed) => panic!("{input:?} parsed as {parsed:?}"),
                Err(error) => {
                    assert!(
                        error.message.contains(message),
                        "{input:?}: {:?} lacks {message:?}",
                        error.message
                    );
                    assert_eq!(error.column, *column, "{input:?}: {error}");
                    assert_eq!(error.input, *input);
                }
            }
        }
    }

    #[test]
    fn error_display_names_the_input() {
        let error = parse("team=~\"sre|(\"").err().map(|e| e.to_string());
        let text = error.unwrap_or_default();
        assert_eq!(
            text,
            "`team=~\"sre|(\"`: invalid regex `sre|(`: unclosed group (at character 7)"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn matching_semantics() {
        let alert = labels(&[
            ("severity", "critical"),
            ("team", "sre"),
            ("env", "prod-eu"),
        ]);
        let table: &[(&str, bool)] = &[
            ("severity=critical", true),
            ("severity=warning", false),
            ("severity!=warning", true),
            ("severity!=critical", false),
            // Regexes are anchored on both ends.
            ("team=~sre|infra", true),
            ("team=~sr", false),
            ("team=~re", false),
            ("env=~prod", false),
            ("env=~\"prod.*\"", true),
            ("env=~\".*eu\"", true),
            ("env!~prod", true),
            ("env!~\"prod-.*\"", false),
            // The anchor wraps the whole alternation, not just its ends.
            ("env=~\"x|prod-eu\"", true),
            ("env=~\"prod|prod-eu-x\"", false),
            // A missing label is the empty string.
            ("missing=\"\"", true),
            ("missing!=\"\"", false),
            ("missing=~\".*\"", true),
            ("missing=~\".+\"", false),
            ("missing!~\".+\"", true),
            ("missing!=x", true),
            ("severity=\"\"", false),
        ];
        for (input, want) in table {
            let matchers = Matchers(parse(input).unwrap_or_default());
            assert!(!matchers.0.is_empty(), "{input}");
            assert_eq!(matchers.matches(&alert), *want, "{input}");
        }
    }

    #[test]
    fn regex_does_not_cross_lines_without_flag() {
        let m = Matchers(parse("msg=~\"a.*\"").unwrap_or_default());
        assert!(m.matches(&labels(&[("msg", "abc")])));
        assert!(!m.matches(&labels(&[("msg", "a\nb")])));
    }

    #[test]
    fn all_matchers_must_match_and_empty_set_matches_all() {
        let entries = vec![
            "severity=critical".to_string(),
            "team=~sre|infra".to_string(),
        ];
        let matchers = Matchers::parse_all(&entries).unwrap_or_default();
        assert_eq!(matchers.0.len(), 2);
        assert!(matchers.matches(&labels(&[("severity", "critical"), ("team", "infra")])));
        assert!(!matchers.matches(&labels(&[("severity", "critical"), ("team", "web")])));
        assert!(Matchers::default().matches(&labels(&[])));
    }

    #[test]
    fn parse_all_reports_each_bad_entry_by_index() {
        let entries = vec![
            "ok=1".to_string(),
            "bad".to_string(),
            "fine=2".to_string(),
            "x=~(".to_string(),
        ];
        let errors = Matchers::parse_all(&entries).err().unwrap_or_default();
        let indexes: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, vec![1, 3]);
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "foo=bar",
            "a!=\"x\\\"y\\\\\"",
            "n=\"l1\\nl2\"",
            "環境=~本番.*",
        ] {
            let parsed = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            let again = parse(&parsed[0].to_string()).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, again, "{input}");
        }
    }
}
