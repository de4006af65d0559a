//! Tidy tests in the manner of rust-analyzer's: they read `src/` as text and fail
//! on an import that points up the layer table and on a file or function grown past
//! the size STYLE.md asks for. Each checker is a plain function over a path and its
//! text, so the self-checks at the bottom prove it can fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The components by layer, lowest first. A component imports any lower layer, its
/// own layer only through `SAME_LAYER`, and never a higher one.
const LAYERS: [&[&str]; 7] = [
    &[
        "money",
        "shard",
        "stop",
        "limiter",
        "progress",
        "timestamp",
        "exit",
        "layout",
        "atomic_file",
        "objstore",
        "simulator",
    ],
    &["schema", "record"],
    &["config"],
    &["client", "ledger", "sink", "source"],
    &["export", "ddl", "report", "reconcile"],
    &["state"],
    &["cli", "logging", "app"],
];

/// Same-layer imports allowed, as (importer, imported), each one way only: both
/// adapters record what they did in the ledger, and the ledger knows neither; a
/// record implements the column table `schema` defines; the commands and the
/// logger take the command line's types; reconcile reads the export through
/// the report's reader.
const SAME_LAYER: [(&str, &str); 6] = [
    ("sink", "ledger"),
    ("source", "ledger"),
    ("record", "schema"),
    ("app", "cli"),
    ("logging", "cli"),
    ("reconcile", "report"),
];

/// The OpenRouter stand-in imports nothing of the crate, so that it stays a stand-in
/// for the real API rather than an echo of the client.
const STANDALONE: &str = "simulator";

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 60;

/// In a `//` line above a function, or a `//!` line of a file, this exempts it from
/// the size limit; the rest of the line says why.
const EXEMPTION: &str = "Long because";

#[test]
fn imports_point_only_downward() {
    let files = source_files();
    let report = check_layers(&files);
    eprintln!(
        "architecture: {} files, {} cross-component references, {} component edges, {} offences",
        files.len(),
        report.references,
        report.edges.len(),
        report.offences.len()
    );
    assert!(
        report.offences.is_empty(),
        "{} import(s) break the layer table in tests/it/architecture.rs \
         (move the shared type down a layer, or the importer up):\n{}",
        report.offences.len(),
        report.offences.join("\n")
    );
}

#[test]
fn files_and_functions_stay_small() {
    let files = source_files();
    let offences: Vec<String> = files
        .iter()
        .flat_map(|file| check_sizes(&file.path, &file.text))
        .collect();
    eprintln!(
        "sizes: {} files, {} offences (files over {MAX_FILE_LINES} lines, functions over {MAX_FN_LINES})",
        files.len(),
        offences.len()
    );
    assert!(
        offences.is_empty(),
        "{} file(s) or function(s) too long; split them, or say `// {EXEMPTION} …` \
         above the function (`//! {EXEMPTION} …` for a file):\n{}",
        offences.len(),
        offences.join("\n")
    );
}

/// A source file: its path from the crate root (`src/sink/csv.rs`) and its text.
struct SourceFile {
    path: String,
    text: String,
}

/// Every `.rs` file under `src/`, in path order.
fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    collect_rs(&root.join("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap();
            let parts: Vec<_> = relative.iter().map(|p| p.to_str().unwrap()).collect();
            SourceFile {
                path: parts.join("/"),
                text,
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, paths: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, paths);
        } else if path.extension().is_some_and(|e| e == "rs") {
            paths.push(path);
        }
    }
}

// ---------------------------------------------------------------- layers

#[derive(Default)]
struct LayerReport {
    /// `crate::` references from one component to another.
    references: usize,
    /// Distinct (importer, imported) component pairs.
    edges: BTreeSet<(String, String)>,
    offences: Vec<String>,
}

/// Checks every `crate::` reference of `files` against the layer table.
fn check_layers(files: &[SourceFile]) -> LayerReport {
    let mut report = LayerReport::default();
    let mut unknown = BTreeSet::new();
    for file in files {
        let Some(from) = component(&file.path) else {
            continue;
        };
        if layer(from).is_none() && unknown.insert(from) {
            report.offences.push(format!(
                "{}: {from} is not in the layer table: add it to the layer table",
                file.path
            ));
        }
        for import in crate_imports(&file.text) {
            if import.target == from {
                continue;
            }
            report.references += 1;
            report
                .edges
                .insert((from.to_owned(), import.target.clone()));
            if let Err(why) = may_import(from, &import.target) {
                report.offences.push(format!(
                    "{}:{}: {from} ({}) imports crate::{} ({}){why}",
                    file.path,
                    import.line,
                    label(layer(from)),
                    import.target,
                    label(layer(&import.target)),
                ));
            }
        }
    }
    report
}

/// Whether component `from` may import component `to`; the error adds to the message.
fn may_import(from: &str, to: &str) -> Result<(), &'static str> {
    if from == STANDALONE {
        return Err(": the simulator imports nothing of the crate");
    }
    match (layer(from), layer(to)) {
        // An unknown importer is reported once, as itself.
        (None, _) => Ok(()),
        (Some(f), Some(t)) if t < f || SAME_LAYER.contains(&(from, to)) => Ok(()),
        _ => Err(""),
    }
}

/// The first path segment under `src/`; `None` for the crate roots.
fn component(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("src/")?;
    if matches!(rest, "lib.rs" | "main.rs") {
        return None;
    }
    let head = rest.split('/').next()?;
    Some(head.strip_suffix(".rs").unwrap_or(head))
}

fn layer(component: &str) -> Option<usize> {
    LAYERS.iter().position(|names| names.contains(&component))
}

fn label(layer: Option<usize>) -> String {
    layer.map_or_else(|| "L?".to_owned(), |l| format!("L{l}"))
}

/// A module named right after `crate::`, and the line it is named on.
#[derive(Debug, PartialEq)]
struct Import {
    line: usize,
    target: String,
}

/// Every `crate::<module>` in code: `use` trees, braces included, and inline paths.
fn crate_imports(text: &str) -> Vec<Import> {
    let code = mask(text);
    let tokens = tokenize(&code);
    let mut imports = Vec::new();
    for (k, token) in tokens.iter().enumerate() {
        let starts_path = token.text == "crate"
            && tokens.get(k + 1).is_some_and(|t| t.text == "::")
            && (k == 0 || tokens[k - 1].text != "$");
        if starts_path {
            path_heads(&tokens[k + 2..], &mut imports);
        }
    }
    imports
}

/// The first segment of the path in `tokens`: one name, or each name of a group.
fn path_heads(tokens: &[Token], imports: &mut Vec<Import>) {
    let mut push = |token: &Token| {
        if token.text != "self" {
            imports.push(Import {
                line: token.line,
                target: token.text.to_owned(),
            });
        }
    };
    let Some(first) = tokens.first() else { return };
    if first.text != "{" {
        if is_ident(first.text) {
            push(first);
        }
        return;
    }
    let mut depth = 0;
    let mut expect_name = false;
    for token in tokens {
        match token.text {
            "{" => {
                depth += 1;
                expect_name = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            "," => expect_name = depth == 1,
            name if expect_name && is_ident(name) => {
                push(token);
                expect_name = false;
            }
            _ => expect_name = false,
        }
    }
}

// ---------------------------------------------------------------- sizes

/// Files over `MAX_FILE_LINES` (a trailing test module not counted) and non-test
/// functions over `MAX_FN_LINES`, from the `fn` line to the closing brace.
fn check_sizes(path: &str, text: &str) -> Vec<String> {
    let mut offences = Vec::new();
    if path.ends_with("/tests.rs") || path.contains("/tests/") {
        return offences;
    }
    let code = mask(text);
    let tokens = tokenize(&code);
    let lines: Vec<&str> = text.lines().collect();
    let test_mods: Vec<Item> = items(&tokens, "mod")
        .into_iter()
        .filter(|m| m.is_test)
        .collect();
    let counted = match test_mods.last() {
        Some(tests) if tests.trailing => tests.first_line - 1,
        _ => lines.len(),
    };
    let exempt = lines
        .iter()
        .any(|l| l.trim_start().starts_with("//!") && l.contains(EXEMPTION));
    if counted > MAX_FILE_LINES && !exempt {
        offences.push(format!("{path}: {counted} lines"));
    }
    for function in items(&tokens, "fn") {
        let length = function.last_line - function.line + 1;
        let in_tests = test_mods
            .iter()
            .any(|m| (m.first_line..=m.last_line).contains(&function.line));
        if length > MAX_FN_LINES && !function.is_test && !in_tests && !says_why(&lines, &function) {
            offences.push(format!(
                "{path}:{} fn {}: {length} lines",
                function.line, function.name
            ));
        }
    }
    offences
}

/// Whether a `//` line among the item's attributes and the comments right above
/// them says `Long because`.
fn says_why(lines: &[&str], item: &Item) -> bool {
    let is_comment = |line: &&str| line.trim_start().starts_with("//");
    let mut top = item.first_line;
    while top > 1 && is_comment(&lines[top - 2]) {
        top -= 1;
    }
    lines[top - 1..item.line - 1]
        .iter()
        .any(|l| is_comment(l) && l.contains(EXEMPTION))
}

/// A `fn` or `mod` with a body. Lines are 1-based.
struct Item<'a> {
    name: &'a str,
    /// The line of its first attribute or qualifier.
    first_line: usize,
    /// The line of the keyword.
    line: usize,
    /// The line of the closing brace.
    last_line: usize,
    /// Nothing but whitespace and comments follow it.
    trailing: bool,
    /// It carries `#[test]`, `#[tokio::test]` or `#[cfg(test)]`.
    is_test: bool,
}

/// Every item introduced by `keyword` that has a `{…}` body.
fn items<'a>(tokens: &[Token<'a>], keyword: &str) -> Vec<Item<'a>> {
    let mut found = Vec::new();
    for (k, token) in tokens.iter().enumerate() {
        if token.text != keyword {
            continue;
        }
        let Some(name) = tokens.get(k + 1).filter(|t| is_ident(t.text)) else {
            continue;
        };
        let Some(close) = body_start(tokens, k + 2).and_then(|open| matching_close(tokens, open))
        else {
            continue;
        };
        let (start, attributes) = preamble(tokens, k);
        found.push(Item {
            name: name.text,
            first_line: tokens[start].line,
            line: token.line,
            last_line: tokens[close].line,
            trailing: close + 1 == tokens.len(),
            is_test: attributes.iter().any(|a| is_test_attribute(a)),
        });
    }
    found
}

/// The first token of the item whose keyword is at `k`, walking back over its
/// qualifiers (`pub(crate) async`) and outer attributes; and those attributes' insides.
fn preamble<'t, 'a>(tokens: &'t [Token<'a>], k: usize) -> (usize, Vec<&'t [Token<'a>]>) {
    const QUALIFIERS: [&str; 13] = [
        "pub", "(", ")", "crate", "super", "self", "in", "::", "async", "const", "unsafe",
        "extern", "default",
    ];
    let mut start = k;
    while start > 0 && QUALIFIERS.contains(&tokens[start - 1].text) {
        start -= 1;
    }
    let mut attributes = Vec::new();
    while start > 0 && tokens[start - 1].text == "]" {
        let Some(open) = matching_open_bracket(tokens, start - 1) else {
            break;
        };
        if open == 0 || tokens[open - 1].text != "#" {
            break;
        }
        attributes.push(&tokens[open + 1..start - 1]);
        start = open - 1;
    }
    (start, attributes)
}

/// `cfg(test)`, or an attribute path ending in `test` (`test`, `tokio::test(…)`).
fn is_test_attribute(tokens: &[Token]) -> bool {
    let texts: Vec<&str> = tokens.iter().map(|t| t.text).collect();
    let path_end = texts.iter().position(|t| *t == "(").unwrap_or(texts.len());
    texts == ["cfg", "(", "test", ")"] || texts[..path_end].last() == Some(&"test")
}

/// The `{` opening the body of an item whose signature starts at `from`; `None` for
/// a declaration ending in `;`.
fn body_start(tokens: &[Token], from: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        match token.text {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "{" if depth == 0 => return Some(i),
            ";" if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

fn matching_close(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.text {
            "{" => depth += 1,
            "}" if depth == 1 => return Some(i),
            "}" => depth -= 1,
            _ => {}
        }
    }
    None
}

fn matching_open_bracket(tokens: &[Token], close: usize) -> Option<usize> {
    let mut depth = 0;
    for i in (0..=close).rev() {
        match tokens[i].text {
            "]" => depth += 1,
            "[" if depth == 1 => return Some(i),
            "[" => depth -= 1,
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------- lexing

/// A word, a `::`, or one other character of code, and its 1-based line.
struct Token<'a> {
    text: &'a str,
    line: usize,
}

/// Splits code (already masked) into tokens.
fn tokenize(code: &str) -> Vec<Token<'_>> {
    let bytes = code.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < bytes.len() {
        let start = i;
        if bytes[i] == b'\n' {
            line += 1;
            i += 1;
            continue;
        } else if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        } else if is_word(bytes[i]) {
            while i < bytes.len() && is_word(bytes[i]) {
                i += 1;
            }
        } else if code[i..].starts_with("::") {
            i += 2;
        } else {
            i += 1;
        }
        tokens.push(Token {
            text: &code[start..i],
            line,
        });
    }
    tokens
}

fn is_ident(text: &str) -> bool {
    text.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// `text` with every comment and string or char literal blanked out, newlines kept,
/// so that lines still match the source.
fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let end = literal_end(&chars, i);
        if end == i {
            code.push(chars[i]);
            i += 1;
        } else {
            code.extend(
                chars[i..end]
                    .iter()
                    .map(|&c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        }
    }
    code
}

/// Just past the comment or literal that starts at `i`; `i` when none does.
fn literal_end(c: &[char], i: usize) -> usize {
    let after_word = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    match (c[i], c.get(i + 1)) {
        ('/', Some('/')) => c[i..]
            .iter()
            .position(|&ch| ch == '\n')
            .map_or(c.len(), |p| i + p),
        ('/', Some('*')) => block_comment_end(c, i + 2),
        ('"', _) => string_end(c, i + 1),
        ('\'', _) => char_end(c, i),
        ('b' | 'c' | 'r', _) if !after_word => prefixed_end(c, i),
        _ => i,
    }
}

/// Nested block comments, as Rust has them.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 1;
    while i < c.len() {
        match (c[i], c.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) if depth == 1 => return i + 2,
            ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
    }
    c.len()
}

fn string_end(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// A char literal (`'x'`, `'\n'`, `'\u{1F600}'`); a lifetime or label (`'a`) is
/// none, and gives `i`.
fn char_end(c: &[char], i: usize) -> usize {
    match (c.get(i + 1), c.get(i + 2)) {
        (Some('\\'), _) => c
            .get(i + 3..)
            .and_then(|rest| rest.iter().position(|&ch| ch == '\''))
            .map_or(c.len(), |p| i + 4 + p),
        (Some(_), Some('\'')) => i + 3,
        _ => i,
    }
}

/// `b"…"`, `c"…"`, `b'x'` and the raw strings `r"…"`, `r#"…"#`, `br#"…"#`, `cr"…"`;
/// `i` for a word that only starts with those letters, or a raw identifier `r#type`.
fn prefixed_end(c: &[char], i: usize) -> usize {
    let j = if c[i] == 'r' { i } else { i + 1 };
    match c.get(j) {
        Some('"') if j > i => string_end(c, j + 1),
        Some('\'') if c[i] == 'b' => match char_end(c, j) {
            end if end == j => i,
            end => end,
        },
        Some('r') => {
            let hashes = c[j + 1..].iter().take_while(|&&ch| ch == '#').count();
            if c.get(j + 1 + hashes) != Some(&'"') {
                return i;
            }
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body = j + 2 + hashes;
            c[body..]
                .windows(closing.len())
                .position(|w| w == closing.as_slice())
                .map_or(c.len(), |p| body + p + closing.len())
        }
        _ => i,
    }
}

// ---------------------------------------------------------------- self-checks

fn fake(path: &str, text: &str) -> Vec<SourceFile> {
    vec![SourceFile {
        path: path.to_owned(),
        text: text.to_owned(),
    }]
}

#[test]
fn planted_upward_import_is_caught() {
    let report = check_layers(&fake(
        "src/money.rs",
        "//! Amounts.\n\nuse crate::export::run;\n",
    ));
    assert_eq!(
        report.offences,
        ["src/money.rs:3: money (L0) imports crate::export (L4)"]
    );
}

#[test]
fn inline_crate_path_is_caught() {
    let text = "fn parse() -> Schema {\n    crate::ddl::SchemaArgs::default()\n}\n";
    let report = check_layers(&fake("src/config/settings.rs", text));
    assert_eq!(
        report.offences,
        ["src/config/settings.rs:2: config (L2) imports crate::ddl (L4)"]
    );
}

#[test]
fn each_name_of_a_nested_use_group_is_checked() {
    let text = "use crate::{\n    money::Money,\n    sink::{csv, parquet},\n    self,\n};\n";
    let report = check_layers(&fake("src/record/mod.rs", text));
    assert_eq!(
        report.offences,
        ["src/record/mod.rs:3: record (L1) imports crate::sink (L3)"]
    );
    assert_eq!(report.references, 2);
}

#[test]
fn comments_and_strings_are_ignored() {
    let text = r##"//! Uses crate::app, in prose.
/// Like `crate::export::run`.
pub(crate) fn f<'a>(x: &'a str) -> char {
    // use crate::cli;
    /* crate::report /* nested */ crate::ddl */
    let _ = ("crate::app", r#"crate::app "quoted""#, b"crate::app", '"');
    let _ = "escaped \" crate::app";
    macro_rules! m { () => { $crate::app }; }
    'x'
}
"##;
    let report = check_layers(&fake("src/money.rs", text));
    assert_eq!(report.offences, Vec::<String>::new());
    assert_eq!(report.references, 0);
}

#[test]
fn same_layer_pairs_go_one_way_and_the_simulator_stands_alone() {
    let mut files = fake("src/sink/mod.rs", "use crate::ledger::Ledger;\n");
    files.extend(fake("src/ledger/mod.rs", "use crate::sink::PendingFile;\n"));
    files.extend(fake("src/simulator/mod.rs", "use crate::money::Money;\n"));
    files.extend(fake("src/bench/mod.rs", "use crate::app;\n"));
    files.extend(fake("src/bench/rate.rs", "use crate::app;\n"));
    assert_eq!(
        check_layers(&files).offences,
        [
            "src/ledger/mod.rs:1: ledger (L3) imports crate::sink (L3)",
            "src/simulator/mod.rs:1: simulator (L0) imports crate::money (L0): \
             the simulator imports nothing of the crate",
            "src/bench/mod.rs: bench is not in the layer table: add it to the layer table",
        ]
    );
}

/// A function of `lines` lines, `fn` line and closing brace included.
fn function(name: &str, lines: usize) -> String {
    let body = "    let _ = 0;\n".repeat(lines - 2);
    format!("fn {name}() {{\n{body}}}\n")
}

#[test]
fn long_function_is_caught_unless_it_says_why() {
    let text = format!(
        "//! Sizes.\n{}{}",
        function("fits", MAX_FN_LINES),
        function("long", 61)
    );
    assert_eq!(
        check_sizes("src/money.rs", &text),
        ["src/money.rs:62 fn long: 61 lines"]
    );

    let why = format!(
        "/// Docs.\n// Long because one table.\n#[inline]\n{}",
        function("long", 61)
    );
    assert_eq!(check_sizes("src/money.rs", &why), Vec::<String>::new());
}

#[test]
fn braces_in_literals_and_comments_do_not_count() {
    let tricky = r##"fn tricky<'a>(x: &'a str) -> char {
    let _ = ("{", r#"}"{"#, b'{', br"}", "\"{");
    // }
    /* } /* } */ } */
    '}'
}
"##;
    let text = format!("{tricky}{}", function("long", 61));
    assert_eq!(
        check_sizes("src/money.rs", &text),
        ["src/money.rs:7 fn long: 61 lines"]
    );
}

#[test]
fn test_code_is_not_measured() {
    let code = "const A: u8 = 0;\n".repeat(MAX_FILE_LINES - 2);
    let tests = format!(
        "#[tokio::test]\n{}\n#[test]\n{}",
        function("a", 80),
        function("b", 80)
    );
    let text = format!(
        "{code}\n#[cfg(test)]\nmod tests {{\n{}{tests}}}\n",
        function("helper", 80)
    );
    assert_eq!(check_sizes("src/money.rs", &text), Vec::<String>::new());
    assert_eq!(
        check_sizes("src/ledger/tests.rs", &function("helper", 80)),
        Vec::<String>::new()
    );

    let over = format!("{code}{}", "const B: u8 = 0;\n".repeat(3));
    assert_eq!(
        check_sizes("src/money.rs", &over),
        ["src/money.rs: 401 lines"]
    );
    let why = format!("//! Long because one table.\n{over}");
    assert_eq!(check_sizes("src/money.rs", &why), Vec::<String>::new());
}
