//! Admission: the webhook's view of workloads. This part reads the images a workload runs
//! ([`images`]) and builds the JSON patch that pins verified digests into them ([`patch`]).

pub mod images;
pub mod patch;
