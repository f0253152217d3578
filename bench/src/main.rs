//! `lanyard-bench [all|idle|commands|push-server|push|steps|enrol] [options]`, also run as
//! `lanyard bench ...` (the server's command line runs this binary with the same arguments).

fn main() -> std::process::ExitCode {
    lanyard_bench::bench::cli_main(std::env::args_os())
}
