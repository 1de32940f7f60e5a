//! Finds the source line of a config path such as `models[2].deployments[0].provider`,
//! so that problems found after parsing still point into the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key and sequence item in a YAML document.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    pub fn build(text: &str) -> Self {
        let mut recorder = Recorder::default();
        // A syntax error stops the walk early; yaml_serde reports it with its own line.
        let _ = Parser::new_from_str(text).load(&mut recorder, false);
        LineIndex {
            lines: recorder.lines,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Recorder {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    /// A node (key or value) begins.
    fn node(&mut self, event: &Event, mark: Marker) {
        let line = mark.line();
        match self.stack.last_mut() {
            Some(Frame::Map { key: key @ None }) => {
                let name = match event {
                    Event::Scalar(text, ..) => text.clone(),
                    _ => "?".to_string(),
                };
                *key = Some(name);
                let path = self.path();
                self.lines.entry(path).or_insert(line);
                if !matches!(event, Event::Scalar(..) | Event::Alias(..)) {
                    // A complex key: walk it like a value so the stack stays balanced.
                    self.open(event);
                }
                return;
            }
            Some(Frame::Seq { .. }) => {
                let path = self.path();
                self.lines.entry(path).or_insert(line);
            }
            _ => {}
        }
        if !self.open(event) {
            self.value_done();
        }
    }

    /// Pushes a frame for a container; false for scalars and aliases.
    fn open(&mut self, event: &Event) -> bool {
        match event {
            Event::MappingStart(..) => self.stack.push(Frame::Map { key: None }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq { index: 0 }),
            _ => return false,
        }
        true
    }

    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(..)
            | Event::Alias(..)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => self.node(&event, mark),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  proxy_listen: 127.0.0.1:0
providers:
  - name: a
    kind: mock
models:
  - name: m1
    deployments:
      - provider: a
  - name: m2
    aliases: [x, y]
    deployments:
      - provider: a
      - {provider: b, weight: 2}
";

    #[test]
    fn finds_lines_of_keys_and_items() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line_of("server.proxy_listen"), Some(2));
        assert_eq!(index.line_of("providers[0]"), Some(4));
        assert_eq!(index.line_of("providers[0].kind"), Some(5));
        assert_eq!(index.line_of("models[1].name"), Some(10));
        assert_eq!(index.line_of("models[1].aliases[1]"), Some(11));
        assert_eq!(index.line_of("models[1].deployments[1].weight"), Some(14));
        assert_eq!(index.line_of("models[1].deployments[0].provider"), Some(13));
        // Unknown leaves fall back to the nearest known ancestor.
        assert_eq!(index.line_of("models[0].deployments[0].nope"), Some(9));
    }
}
