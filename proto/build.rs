//! Generates Shoal's gRPC code (client and server) and a descriptor set for reflection.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "shoal/common/v1/common.proto",
    "shoal/executor/v1/executor.proto",
    "shoal/invoker/v1/invoker.proto",
    "shoal/connectors/v1/connectors.proto",
    "shoal/kvdb/v1/kvdb.proto",
    "shoal/scheduler/v1/scheduler.proto",
    "externalscaler/externalscaler.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Payloads are `bytes::Bytes`: the gateway hands the request body to the executor
        // and retries on another executor without copying it.
        .bytes(".shoal.executor.v1.InvokeRequest.payload")
        .bytes(".shoal.executor.v1.InvokeRequest.raw_request")
        .bytes(".shoal.executor.v1.InvokeResponse.payload")
        .bytes(".shoal.invoker.v1.InvokeRequest.payload")
        .bytes(".shoal.invoker.v1.InvokeResponse.payload")
        .file_descriptor_set_path(out.join("shoal_descriptor.bin"))
        .compile_protos(PROTOS, &["."])?;
    println!("cargo:rerun-if-changed=shoal");
    println!("cargo:rerun-if-changed=externalscaler");
    Ok(())
}
