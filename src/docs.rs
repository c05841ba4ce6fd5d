//! The files generated from the command-line definition, so that they
//! cannot drift from `aoefs --help`: the man page aoefs(8) and the bash and
//! zsh completions. They are kept in the repository (the package installs
//! them); a test of the `aoefs` binary checks that they are up to date and
//! rewrites them when `AOEFS_UPDATE_DOCS=1` is set.
//!
//! aoefs(8) is clap_mangen's NAME, SYNOPSIS, DESCRIPTION and OPTIONS, a
//! COMMANDS section made here from the subcommands, and the hand-written
//! sections of `Documentation/aoefs.8.in` (mount options, the files in the
//! mount, exit status, examples, see also).

use clap::Command;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The hand-written sections of aoefs(8), in roff.
const MAN_SECTIONS: &str = include_str!("../Documentation/aoefs.8.in");

/// Each generated file: its path in the repository and its contents.
pub fn generated(cmd: Command) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("Documentation/aoefs.8", man_page(cmd.clone())),
        ("completions/aoefs.bash", completion(cmd.clone(), Shell::Bash)),
        ("completions/_aoefs", completion(cmd, Shell::Zsh)),
    ]
}

/// aoefs(8).
pub fn man_page(mut cmd: Command) -> Vec<u8> {
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone()).section("8").manual("System Manager's Manual");
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    out.extend(synopsis(&mut cmd).render().into_bytes());
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    out.extend(commands_section(&mut cmd).render().into_bytes());
    out.extend_from_slice(MAN_SECTIONS.as_bytes());
    out
}

/// The subcommands shown (not `help`, nothing hidden).
fn subcommands(cmd: &mut Command) -> impl Iterator<Item = &mut Command> {
    cmd.get_subcommands_mut().filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// A command's usage without "Usage: ".
fn usage(sub: &mut Command) -> String {
    let u = sub.render_usage().to_string();
    u.strip_prefix("Usage: ").unwrap_or(&u).trim().to_string()
}

/// SYNOPSIS: the mount's usage line, then one per subcommand.
fn synopsis(cmd: &mut Command) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["SYNOPSIS"]);
    let mount = usage(cmd);
    let mut lines: Vec<String> =
        mount.lines().map(str::trim).filter(|l| !l.contains("<COMMAND>")).map(String::from).collect();
    lines.extend(subcommands(cmd).map(usage));
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            r.control("br", []);
        }
        let (name, rest) = l.split_once(' ').unwrap_or((l, ""));
        r.text([bold(name), roman(format!(" {rest}"))]);
    }
    r
}

/// COMMANDS: each subcommand's usage, description and arguments.
fn commands_section(cmd: &mut Command) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    r.text([roman("These work on a mounted aoefs through its files (see FILES IN THE MOUNT).")]);
    for sub in subcommands(cmd) {
        r.control("TP", []);
        r.text([bold(usage(sub))]);
        let about = sub.get_long_about().or_else(|| sub.get_about()).map(|s| s.to_string()).unwrap_or_default();
        r.text([roman(about.replace('\n', " "))]);
        let args: Vec<_> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
            .filter_map(|a| Some((a, a.get_help()?.to_string())))
            .collect();
        if args.is_empty() {
            continue;
        }
        r.control("RS", []);
        for (a, help) in args {
            r.control("TP", []);
            let name = match a.get_long() {
                Some(l) => bold(format!("--{l}")),
                None => italic(a.get_value_names().and_then(|v| v.first()).map_or(a.get_id().as_str(), |v| v.as_str())),
            };
            r.text([name]);
            r.text([roman(help)]);
        }
        r.control("RE", []);
    }
    r
}

/// A shell's completion script.
pub fn completion(mut cmd: Command, shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "aoefs", &mut out);
    out
}
