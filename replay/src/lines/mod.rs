//! `lines import --from quo|twilio [--merge FILE [--dry-run]]`: the `[[lines]]` entries for the
//! numbers a provider lists, printed, or merged into a configuration file in place.
//!
//! # Layout
//!
//! - This file: the command: fetch the listing with the library's backfill clients
//!   ([`hooklog::backfill::quo::phone_numbers`], [`hooklog::backfill::twilio::incoming_phone_numbers`]:
//!   the same limiter, retries and errors as `backfill`, credentials and API base from the same
//!   configuration), then print or merge, and report.
//! - [`entry`]: the listing checked (hostile input: bad numbers and ids are skipped and
//!   reported) and the ids made for new lines.
//! - [`merge`]: the merge into the file (`toml_edit`: comments and layout kept), its rules, the
//!   check that the result loads, and the atomic write with a `.bak`.
//!
//! New lines are never approved by the import: they get `ten_dlc = "pending"`, which sends
//! nothing, and a business name the operator is told to check (the one every line of the
//! file has, else [`merge::PLACEHOLDER_BUSINESS`]).

pub mod entry;
pub mod merge;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use hooklog::backfill::{quo, twilio, BACKFILL_RATE, BACKFILL_RETRY};
use hooklog::config::Config;
use hooklog::provider::SendProvider;
use hooklog::send::limiter::Limiter;
use serde_json::json;
use toml_edit::{ArrayOfTables, DocumentMut, Item};

use crate::cli::{LineProvider, LinesArgs, LinesCommand, LinesImportArgs};
use crate::context::Context;
use crate::output::{one_line, Out};
use entry::{assign_ids, provider_name, Listed, Skipped};
use merge::Report;

/// Runs the subcommand.
pub fn run(ctx: &Context, args: &LinesArgs) -> anyhow::Result<()> {
    match &args.command {
        LinesCommand::Import(a) => import(ctx, a),
    }
}

fn import(ctx: &Context, args: &LinesImportArgs) -> anyhow::Result<()> {
    let provider = match args.from {
        LineProvider::Quo => SendProvider::Quo,
        LineProvider::Twilio => SendProvider::Twilio,
    };
    let (listed, skipped) = fetch(&ctx.config, provider)?;
    match &args.merge {
        None => print(ctx, provider, &listed, &skipped),
        Some(path) => merge_into(ctx, path, provider, &listed, &skipped, args.dry_run),
    }
}

/// The provider's numbers, checked.
fn fetch(config: &Config, provider: SendProvider) -> anyhow::Result<(Vec<Listed>, Vec<Skipped>)> {
    let limiter = Arc::new(Limiter::new(BACKFILL_RATE));
    Ok(match provider {
        SendProvider::Quo => {
            let key = config
                .openphone
                .api_key
                .as_ref()
                .map(|k| k.expose())
                .unwrap_or_default();
            entry::from_quo(quo::phone_numbers(
                &config.openphone.api_base,
                key,
                BACKFILL_RETRY,
                limiter,
            )?)
        }
        SendProvider::Twilio => {
            let token = config
                .twilio
                .auth_tokens
                .first()
                .map(|t| t.expose())
                .unwrap_or_default();
            entry::from_twilio(twilio::incoming_phone_numbers(
                &config.twilio.api_base,
                config.twilio.account_sid.as_deref().unwrap_or_default(),
                token,
                1000,
                BACKFILL_RETRY,
                limiter,
            )?)
        }
    })
}

/// Without `--merge`: the entries as TOML on stdout (every listed number), notes on stderr.
fn print(
    ctx: &Context,
    provider: SendProvider,
    listed: &[Listed],
    skipped: &[Skipped],
) -> anyhow::Result<()> {
    let existing: Vec<String> = ctx
        .config
        .lines
        .iter()
        .map(|l| l.business_name.clone())
        .collect();
    let (business, copied) = merge::business_name(&existing);
    let ids = assign_ids(listed, &Default::default());
    let configured = listed
        .iter()
        .filter(|l| ctx.config.lines.iter().any(|c| c.number == l.number))
        .count();
    let mut out = Out::stdout();
    if ctx.json {
        let entries: Vec<_> = listed
            .iter()
            .zip(&ids)
            .map(|(l, id)| {
                json!({
                    "id": id, "number": l.number, "provider": l.provider.as_str(),
                    "phone_number_id": l.phone_number_id, "name": l.name,
                    "ten_dlc": "pending", "business_name": business,
                })
            })
            .collect();
        let skipped: Vec<_> = skipped.iter().map(merge::SkippedJson::from).collect();
        let line = json!({
            "type": "lines", "provider": provider.as_str(), "entries": entries,
            "skipped": skipped, "business_name_copied": copied,
            "configured_already": configured,
        });
        out.line(&line.to_string())?;
        return out.flush();
    }
    let mut tables = ArrayOfTables::new();
    for (l, id) in listed.iter().zip(&ids) {
        tables.push(merge::new_entry(l, id, &business));
    }
    let mut doc = DocumentMut::new();
    doc.insert("lines", Item::ArrayOfTables(tables));
    let name = provider_name(provider);
    out.line(&format!(
        "# [[lines]] for the {} {name} lists (`hooklog-replay lines import --from {}`).",
        count(listed.len(), "number"),
        match provider {
            SendProvider::Quo => "quo",
            SendProvider::Twilio => "twilio",
        }
    ))?;
    out.line("# ten_dlc = \"pending\": nothing is sent from a line until you set \"approved\".")?;
    out.line(&format!("# {}", business_note(&business, copied)))?;
    out.write(doc.to_string().trim_start_matches('\n'))?;
    out.flush()?;
    for s in skipped {
        eprintln!("hooklog-replay: skipped {}: {}", s.what, s.why);
    }
    if configured > 0 {
        eprintln!(
            "hooklog-replay: {} of these {} in the configuration already: `--merge FILE` keeps \
             their settings and adds only the others",
            configured,
            if configured == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

fn business_note(business: &str, copied: bool) -> String {
    if copied {
        format!(
            "business_name = {:?} on new lines: the business every line of the configuration \
             texts for; check it before approving them.",
            one_line(business, Some(80))
        )
    } else {
        format!(
            "business_name = {business:?} on new lines: the configuration requires one; write \
             the business each line texts for before approving it."
        )
    }
}

fn count(n: usize, what: &str) -> String {
    crate::output::count(n as u64, what, &format!("{what}s"))
}

/// With `--merge FILE`: merge, report, and write unless `--dry-run` or nothing changed.
fn merge_into(
    ctx: &Context,
    path: &Path,
    provider: SendProvider,
    listed: &[Listed],
    skipped: &[Skipped],
    dry_run: bool,
) -> anyhow::Result<()> {
    let (old, mut doc) = merge::read(path)?;
    let report = merge::merge(&mut doc, path, provider, listed, skipped)?;
    let new = doc.to_string();
    let changed = new != old;
    let written = if changed && !dry_run {
        Some(merge::write_atomically(path, &new)?)
    } else {
        None
    };
    let mut out = Out::stdout();
    if ctx.json {
        let mut line = json!({
            "type": "summary", "provider": provider.as_str(), "file": path.display().to_string(),
            "dry_run": dry_run, "changed": changed, "written": written.is_some(),
            "backup": written.as_ref().map(|(_, bak)| bak.display().to_string()),
        });
        if let (Some(obj), Ok(serde_json::Value::Object(r))) =
            (line.as_object_mut(), serde_json::to_value(&report))
        {
            obj.extend(r);
            if dry_run && changed {
                obj.insert("diff".into(), merge::diff(path, &old, &new).into());
            }
        }
        out.line(&line.to_string())?;
        return out.flush();
    }
    if dry_run && changed {
        out.write(&merge::diff(path, &old, &new))?;
    }
    out.write(&report_text(path, provider, &report))?;
    let last = match (&written, dry_run, changed) {
        (Some((file, bak)), _, _) => format!(
            "wrote {} (the previous version is {})",
            file.display(),
            bak.display()
        ),
        (None, true, true) => format!("dry run: {} is not changed", path.display()),
        _ => format!("nothing to change: {} is not written", path.display()),
    };
    out.line(&last)?;
    out.flush()
}

/// The text report: a summary line, one line per entry that is not unchanged, the notes.
pub fn report_text(path: &Path, provider: SendProvider, r: &Report) -> String {
    let name = provider_name(provider);
    let mut s = format!(
        "lines import from {name} into {}: {} added, {} filled, {} unchanged, {} differing, {} \
         missing, {} skipped\n",
        path.display(),
        r.added.len(),
        r.filled.len(),
        r.unchanged.len(),
        r.differing.len(),
        r.missing.len(),
        r.skipped.len()
    );
    let pn = |p: &Option<String>| p.as_deref().map(|p| format!(" {p}")).unwrap_or_default();
    for e in &r.added {
        s += &format!(
            "  added      {} {}{}\n",
            e.id,
            e.number,
            pn(&e.phone_number_id)
        );
    }
    for e in &r.filled {
        s += &format!(
            "  filled     {} {}: phone_number_id ={}\n",
            e.id,
            e.number,
            pn(&e.phone_number_id)
        );
    }
    for d in &r.differing {
        s += &format!(
            "  differing  {} {}: {} is \"{}\" in the file, {name} lists it as \"{}\"; left as it is\n",
            d.entry.id, d.entry.number, d.key, d.in_file, d.listed
        );
    }
    for e in &r.missing {
        s += &format!(
            "  missing    {} {}: {name} no longer lists it; left in the file (remove it if the \
             line is retired)\n",
            e.id, e.number
        );
    }
    for k in &r.skipped {
        s += &format!("  skipped    {}: {}\n", k.what, k.why);
    }
    if let Some(business) = &r.business_name {
        s += "new lines: ten_dlc = \"pending\": nothing is sent from them until you set \
              \"approved\"\n";
        s += &business_note(business, r.business_name_copied);
        s.push('\n');
    }
    s
}
