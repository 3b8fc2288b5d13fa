//! A small renderer of the chart's templates for `tests/chart.rs`, since no `helm` binary runs on the
//! build machines. It evaluates what decides which objects and lines exist: `if` / `else if` / `else`,
//! `with`, `range`, `define` (skipped), variables (`$x := ...`, `$x = ...`), `.Values` paths and the
//! functions the chart's conditions use (`not`, `and`, `or`, `empty`, `eq`, `ne`, `gt`, `lt`, `ge`,
//! `le`, `int`, `default`, `ternary`, `quote`, `toString`). What it does not compute (`include`,
//! `printf`, `toYaml`, `lookup`, ...) prints as `placeholder`; an action alone on its line prints
//! nothing (it would print YAML the checker does not build); `range` renders its body once, with the
//! first item. A condition on something it cannot compute is an error, never a guess.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

/// What the renderer prints for a value it does not compute.
pub const PLACEHOLDER: &str = "placeholder";

/// A value while rendering: known (from values.yaml or a literal), or not computed by this renderer.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Known(Value),
    Opaque,
}

fn known(value: impl Into<Value>) -> Val {
    Val::Known(value.into())
}

/// Go template truth: false, 0, nil and empty strings, lists and maps are false.
fn truthy(val: &Val) -> Result<bool, String> {
    let Val::Known(value) = val else {
        return Err("a condition on a value the checker does not compute".into());
    };
    Ok(match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::Tagged(_) => true,
    })
}

/// Non-empty for `with` and `range`: an uncomputed collection counts as non-empty.
fn present(val: &Val) -> bool {
    truthy(val).unwrap_or(true)
}

fn as_int(val: &Val) -> Result<i64, String> {
    match val {
        Val::Known(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("{n} is not an integer")),
        Val::Known(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an integer")),
        Val::Known(Value::Null) => Ok(0),
        other => Err(format!("{other:?} is not an integer")),
    }
}

fn field(val: &Val, name: &str) -> Val {
    match val {
        Val::Known(value) if value.is_mapping() => {
            Val::Known(value.get(name).cloned().unwrap_or(Value::Null))
        }
        Val::Known(_) => Val::Known(Value::Null),
        Val::Opaque => Val::Opaque,
    }
}

fn text_of(val: &Val) -> String {
    match val {
        Val::Known(Value::String(s)) => s.clone(),
        Val::Known(Value::Bool(b)) => b.to_string(),
        Val::Known(Value::Number(n)) => n.to_string(),
        Val::Known(Value::Null) => String::new(),
        _ => PLACEHOLDER.to_owned(),
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Pipe,
    Str(String),
    Word(String),
}

fn tokens(expr: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '|' => {
                chars.next();
                out.push(Tok::Pipe);
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated string in `{expr}`")),
                        Some('"') => break,
                        Some('\\') => text.push(chars.next().unwrap_or('\\')),
                        Some(other) => text.push(other),
                    }
                }
                out.push(Tok::Str(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if " \t\n()|\"".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Tok::Word(word));
            }
        }
    }
    Ok(out)
}

/// The state of one render: values, the current `.`, and the variables.
struct Scope<'a> {
    values: &'a Value,
    dot: Val,
    vars: BTreeMap<String, Val>,
}

impl Scope<'_> {
    fn eval(&self, expr: &str) -> Result<Val, String> {
        let toks = tokens(expr)?;
        let mut pos = 0;
        let val = self.pipeline(&toks, &mut pos)?;
        if pos != toks.len() {
            return Err(format!("unexpected {:?} in `{expr}`", toks[pos]));
        }
        Ok(val)
    }

    fn pipeline(&self, toks: &[Tok], pos: &mut usize) -> Result<Val, String> {
        let mut val = self.command(toks, pos, None)?;
        while toks.get(*pos) == Some(&Tok::Pipe) {
            *pos += 1;
            val = self.command(toks, pos, Some(val))?;
        }
        Ok(val)
    }

    /// One command: a function and its operands (the piped value last), or a single operand.
    fn command(&self, toks: &[Tok], pos: &mut usize, piped: Option<Val>) -> Result<Val, String> {
        let function = match toks.get(*pos) {
            Some(Tok::Word(w)) if w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
                let is_literal = ["true", "false", "nil"].contains(&w.as_str());
                (!is_literal).then(|| w.clone())
            }
            _ => None,
        };
        if function.is_some() {
            *pos += 1;
        }
        let mut args = Vec::new();
        while let Some(tok) = toks.get(*pos) {
            match tok {
                Tok::Pipe | Tok::Close => break,
                Tok::Open => {
                    *pos += 1;
                    args.push(self.pipeline(toks, pos)?);
                    if toks.get(*pos) != Some(&Tok::Close) {
                        return Err("unclosed `(`".into());
                    }
                    *pos += 1;
                }
                Tok::Str(s) => {
                    *pos += 1;
                    args.push(known(s.as_str()));
                }
                Tok::Word(w) => {
                    *pos += 1;
                    args.push(self.operand(w)?);
                }
            }
        }
        args.extend(piped);
        match function {
            Some(name) => call(&name, args),
            None if args.len() == 1 => Ok(args.remove(0)),
            None => Err(format!("{} operands without a function", args.len())),
        }
    }

    fn operand(&self, word: &str) -> Result<Val, String> {
        if let Ok(n) = word.parse::<i64>() {
            return Ok(known(n));
        }
        match word {
            "true" => return Ok(known(true)),
            "false" => return Ok(known(false)),
            "nil" => return Ok(Val::Known(Value::Null)),
            "." => return Ok(self.dot.clone()),
            "$" => return Ok(Val::Opaque),
            _ => {}
        }
        let path = word.strip_prefix('$').map_or(word, |rest| rest);
        let mut parts = path.split('.');
        let head = parts.next().unwrap_or_default();
        let (mut val, rest): (Val, Vec<&str>) = if word.starts_with('$') && !head.is_empty() {
            let var = self
                .vars
                .get(head)
                .cloned()
                .ok_or_else(|| format!("variable ${head} is not set"))?;
            (var, parts.collect())
        } else {
            // `.x.y` (on the dot or the root) or `$.x.y` (on the root).
            let rest: Vec<&str> = parts.collect();
            match rest.first().copied() {
                Some("Values") => (Val::Known(self.values.clone()), rest[1..].to_vec()),
                Some("Release" | "Chart" | "Capabilities" | "Template" | "Files") => {
                    return Ok(known(PLACEHOLDER));
                }
                _ => (self.dot.clone(), rest),
            }
        };
        for name in rest {
            val = field(&val, name);
        }
        Ok(val)
    }
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, String> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("`{name}` lacks argument {}", i + 1))
    };
    let compare = |op: fn(i64, i64) -> bool| Ok(known(op(as_int(&arg(0)?)?, as_int(&arg(1)?)?)));
    match name {
        "not" => Ok(known(!truthy(&arg(0)?)?)),
        "empty" => Ok(known(!truthy(&arg(0)?)?)),
        "and" => {
            for a in &args {
                if !truthy(a)? {
                    return Ok(a.clone());
                }
            }
            arg(args.len().saturating_sub(1))
        }
        "or" => {
            for a in &args {
                if truthy(a)? {
                    return Ok(a.clone());
                }
            }
            arg(args.len().saturating_sub(1))
        }
        "eq" | "ne" => {
            let (a, b) = (arg(0)?, arg(1)?);
            if a == Val::Opaque || b == Val::Opaque {
                return Err(format!("`{name}` on a value the checker does not compute"));
            }
            Ok(known((a == b) == (name == "eq")))
        }
        "gt" => compare(|a, b| a > b),
        "lt" => compare(|a, b| a < b),
        "ge" => compare(|a, b| a >= b),
        "le" => compare(|a, b| a <= b),
        "int" => Ok(known(as_int(&arg(0)?)?)),
        // sprig: `default DEFAULT GIVEN` (GIVEN usually piped in).
        "default" => {
            let given = arg(1)?;
            Ok(if present(&given) { given } else { arg(0)? })
        }
        "ternary" => Ok(if truthy(&arg(2)?)? { arg(0)? } else { arg(1)? }),
        "quote" => Ok(known(format!("\"{}\"", text_of(&arg(0)?)))),
        "toString" => Ok(known(text_of(&arg(0)?))),
        // Non-empty strings the checker does not build.
        "include" | "printf" => Ok(known(PLACEHOLDER)),
        "toYaml" | "toJson" | "nindent" | "indent" | "fromYaml" | "fromJsonArray" | "b64enc"
        | "trunc" | "trimSuffix" | "replace" | "join" | "list" | "dict" | "lookup" | "uniq"
        | "concat" => Ok(Val::Opaque),
        other => Err(format!(
            "function `{other}` is unknown to the checker's renderer"
        )),
    }
}

/// One open block: whether its parent renders, whether a branch was taken, whether it renders now,
/// and the `.` to restore at its `end`.
struct Frame {
    parent_active: bool,
    taken: bool,
    active: bool,
    saved_dot: Option<Val>,
}

/// Renders `text` (a template file) with `values`; an error names the line and the action.
pub fn render(text: &str, values: &Value) -> Result<String, String> {
    let text = strip_comments(text)?;
    let mut scope = Scope {
        values,
        dot: Val::Opaque,
        vars: BTreeMap::new(),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = String::new();
    for (index, line) in text.lines().enumerate() {
        let at = |problem: String| format!("line {}: {problem}", index + 1);
        let segments = split_line(line).map_err(at)?;
        let actions = segments.iter().filter(|s| s.is_action).count();
        let whole_line = actions == 1
            && segments
                .iter()
                .all(|s| s.is_action || s.text.trim().is_empty());
        let mut emitted = String::new();
        let mut printed = false;
        for segment in &segments {
            let active = stack.last().is_none_or(|f| f.active);
            if !segment.is_action {
                if active {
                    emitted.push_str(&segment.text);
                    printed = true;
                }
                continue;
            }
            let body = segment.text.as_str();
            let (keyword, rest) = body.split_once(' ').unwrap_or((body, ""));
            let rest = rest.trim();
            match keyword {
                "if" => {
                    let taken = active && truthy(&scope.eval(rest).map_err(at)?).map_err(at)?;
                    stack.push(Frame {
                        parent_active: active,
                        taken,
                        active: taken,
                        saved_dot: None,
                    });
                }
                "else" => {
                    let frame = stack
                        .last_mut()
                        .ok_or_else(|| at("`else` outside a block".into()))?;
                    let condition = rest.strip_prefix("if ").map(str::trim);
                    let take = match condition {
                        _ if frame.taken || !frame.parent_active => false,
                        Some(condition) => {
                            truthy(&scope.eval(condition).map_err(at)?).map_err(at)?
                        }
                        None => true,
                    };
                    frame.active = take;
                    frame.taken |= take;
                }
                "with" | "range" => {
                    let (vars, expr) = match rest.split_once(":=") {
                        Some((vars, expr)) => (vars.trim(), expr.trim()),
                        None => ("", rest),
                    };
                    let val = if active {
                        scope.eval(expr).map_err(at)?
                    } else {
                        Val::Known(Value::Null)
                    };
                    let take = active && present(&val);
                    let item = match (&val, keyword) {
                        (Val::Known(Value::Sequence(items)), "range") => {
                            items.first().cloned().map_or(Val::Opaque, Val::Known)
                        }
                        (Val::Known(Value::Mapping(map)), "range") => {
                            map.values().next().cloned().map_or(Val::Opaque, Val::Known)
                        }
                        (Val::Known(_), "with") => val.clone(),
                        _ => Val::Opaque,
                    };
                    for var in vars.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                        scope
                            .vars
                            .insert(var.trim_start_matches('$').to_owned(), item.clone());
                    }
                    let saved_dot = Some(std::mem::replace(&mut scope.dot, item));
                    stack.push(Frame {
                        parent_active: active,
                        taken: take,
                        active: take,
                        saved_dot,
                    });
                }
                "define" | "block" => {
                    stack.push(Frame {
                        parent_active: active,
                        taken: true,
                        active: false,
                        saved_dot: None,
                    });
                }
                "end" => {
                    let frame = stack
                        .pop()
                        .ok_or_else(|| at("`end` closes no block".into()))?;
                    if let Some(dot) = frame.saved_dot {
                        scope.dot = dot;
                    }
                }
                _ if body.starts_with('$') && (body.contains(":=") || body.contains(" = ")) => {
                    let (var, expr) = body
                        .split_once(":=")
                        .or_else(|| body.split_once(" = "))
                        .unwrap_or_default();
                    if active {
                        let val = scope.eval(expr.trim()).unwrap_or(Val::Opaque);
                        scope
                            .vars
                            .insert(var.trim().trim_start_matches('$').to_owned(), val);
                    }
                }
                _ => {
                    if active && !whole_line {
                        let val = scope.eval(body).unwrap_or(Val::Opaque);
                        emitted.push_str(&text_of(&val));
                        printed = true;
                    }
                }
            }
        }
        if printed && !(whole_line && emitted.trim().is_empty()) {
            out.push_str(&emitted);
            out.push('\n');
        }
    }
    if let Some(frame) = stack.last() {
        let _ = frame;
        return Err(format!("{} block(s) never closed", stack.len()));
    }
    Ok(out)
}

struct Segment {
    is_action: bool,
    text: String,
}

/// A line as text and actions (inside, without the trim markers).
fn split_line(line: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        segments.push(Segment {
            is_action: false,
            text: rest[..open].to_owned(),
        });
        let close = rest[open..]
            .find("}}")
            .ok_or_else(|| "an action spans lines".to_owned())?
            + open;
        let body = rest[open + 2..close].trim();
        let body = body.strip_prefix('-').unwrap_or(body);
        let body = body.strip_suffix('-').unwrap_or(body).trim();
        segments.push(Segment {
            is_action: true,
            text: body.to_owned(),
        });
        rest = &rest[close + 2..];
    }
    segments.push(Segment {
        is_action: false,
        text: rest.to_owned(),
    });
    Ok(segments)
}

/// Drops `{{/* ... */}}` comments (which may span lines), keeping the line count.
fn strip_comments(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let start = [rest.find("{{- /*"), rest.find("{{/*")]
            .into_iter()
            .flatten()
            .min();
        let Some(start) = start else { break };
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").ok_or("comment never closed")? + start;
        let close = rest[end..]
            .find("}}")
            .ok_or("comment action never closed")?
            + end
            + 2;
        out.extend(rest[start..close].matches('\n').map(|_| '\n'));
        rest = &rest[close..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `base` with `overrides` merged in, mapping by mapping.
pub fn merged(base: &Value, overrides: &Value) -> Value {
    match (base, overrides) {
        (Value::Mapping(base), Value::Mapping(overrides)) => {
            let mut out = base.clone();
            for (key, value) in overrides {
                let merged_value = match base.get(key) {
                    Some(existing) => merged(existing, value),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged_value);
            }
            Value::Mapping(out)
        }
        (_, overrides) => overrides.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Value {
        serde_yaml_ng::from_str("a: {on: true, off: false, list: [x, y], n: 2, s: ''}").unwrap()
    }

    #[test]
    fn conditions_branches_and_blocks() {
        let template = "\
{{- if .Values.a.on }}
on: {{ .Values.a.n }}
{{- else }}
off
{{- end }}
{{- if and .Values.a.on (not .Values.a.off) (gt (int .Values.a.n) 1) }}
both
{{- end }}
{{- if .Values.a.s }}
no
{{- else if .Values.a.list }}
list
{{- end }}
{{- range .Values.a.list }}
- item={{ . }}
{{- end }}
{{- $v := .Values.a.s | default \"d\" }}
v: {{ $v }} {{ ternary 1 2 .Values.a.off }}
{{- define \"x\" }}
never
{{- end }}
{{ include \"x\" . }}
name: {{ include \"x\" . }}-suffix
";
        let out = render(template, &values()).unwrap();
        assert_eq!(
            out,
            "on: 2\nboth\nlist\n- item=x\nv: d 2\nname: placeholder-suffix\n"
        );
        assert!(render("{{ if include \"x\" . | fromYaml }}\n{{ end }}", &values()).is_err());
        assert!(render("{{ if .Values.a.on }}\n", &values()).is_err());
    }

    #[test]
    fn overrides_merge_deeply() {
        let over: Value = serde_yaml_ng::from_str("a: {off: true, new: 1}").unwrap();
        let merged = merged(&values(), &over);
        assert_eq!(merged["a"]["off"], Value::from(true));
        assert_eq!(merged["a"]["on"], Value::from(true));
        assert_eq!(merged["a"]["new"], Value::from(1));
    }
}
