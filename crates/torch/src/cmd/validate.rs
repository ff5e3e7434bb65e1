//! `torch validate FILE`: check a spec file locally.

use anyhow::Result;

use crate::cli::ValidateArgs;
use crate::cmd::submit::read_specs;
use crate::output;

pub(crate) fn run(args: ValidateArgs) -> Result<()> {
    let valid = read_specs(&args.file)?;
    if args.out.json {
        let v: Vec<_> = valid.iter().map(|t| &t.spec).collect();
        output::json(&v)
    } else {
        output::line(format!("{}: {} task(s) valid", args.file, valid.len()))
    }
}
