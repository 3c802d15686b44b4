//! Shoal's gRPC contracts, generated from `proto/shoal/<area>/v1/*.proto`.
//!
//! Every component's client and server live here so that binaries and tests share one
//! definition. This crate holds no logic: only generated code and the descriptor set that
//! the gRPC reflection service publishes.

#![allow(clippy::all, missing_docs)]

/// Messages shared by every API.
pub mod common {
    pub mod v1 {
        tonic::include_proto!("shoal.common.v1");
    }
}

/// The executor: runs Python services.
pub mod executor {
    pub mod v1 {
        tonic::include_proto!("shoal.executor.v1");
    }
}

/// The gateway's public invoker.
pub mod invoker {
    pub mod v1 {
        tonic::include_proto!("shoal.invoker.v1");
    }
}

/// Outgoing connections.
pub mod connectors {
    pub mod v1 {
        tonic::include_proto!("shoal.connectors.v1");
    }
}

/// Key/value store and cache.
pub mod kvdb {
    pub mod v1 {
        tonic::include_proto!("shoal.kvdb.v1");
    }
}

/// Scheduler.
pub mod scheduler {
    pub mod v1 {
        tonic::include_proto!("shoal.scheduler.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Shoal proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shoal_descriptor");

/// KEDA's external scaler contract (served by the scheduler for executor autoscaling).
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}
