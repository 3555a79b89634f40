//! The charts, archive and images nodeimg was made with, pinned.

/// The ethpandaops chart repository and the chart versions nodeimg was
/// made with, with the sha256 of each .tgz (the `digest` of the
/// repository's index.yaml, 2026-07-08).
pub const CHART_REPOSITORY: &str = "https://ethpandaops.github.io/ethereum-helm-charts";
pub const DEFAULT_CHARTS: &[(&str, &str, &str)] = &[
    (
        "geth",
        "1.1.3",
        "76ef685c9dc55a19adbd8f19ca59cb68fae0296c51e2cbee3c699db9de776493",
    ),
    (
        "nethermind",
        "1.1.1",
        "b23f3d1216be07ce14547c1fd0958ab4150ac393649c1ec87e07bf02e2e031d6",
    ),
    (
        "besu",
        "1.1.3",
        "c95069750689bcb924e0e07d5a7a0f398ea013af68db0cac665eb336c0cb7222",
    ),
    (
        "reth",
        "0.1.8",
        "fe8987c072f05cc59531e82690b7417ba379be697f91441ce75872db90f55383",
    ),
    (
        "prysm",
        "1.2.3",
        "c9672166ad2f891c8f06a3ce3fd0668699f08a53aad1a4fb641a13ea49c5a870",
    ),
    (
        "lighthouse",
        "1.1.8",
        "bb8d4d3b2219ea0186f0797dd2d9d9014bdf3fa7404cf58d43e99fbf842e5f53",
    ),
    (
        "teku",
        "1.2.0",
        "e065e6bd3fe51be8bb6ed9b68e63cd43d8d336c2f2770665869a722040574c57",
    ),
    (
        "nimbus",
        "1.2.0",
        "55ebc42f477ea3fbac0bde135fd46fe6713c6036b4c61dcde0f4d45dd953cdac",
    ),
];

/// The reference setup's chart: lumostone/eth2xk8s, its prysm/helm folder.
pub const LEGACY_COMMIT: &str = "6b7e9ef574d1215bc8b73c4eb89304073ca30df0";
/// The legacy chart's name (Chart.yaml) and version at that commit.
pub const LEGACY_CHART: &str = "eth2-prysm";
pub const LEGACY_VERSION: &str = "0.1.4";
/// The folder of the archive that holds the chart.
pub const LEGACY_FOLDER: &str = "prysm/helm";

pub fn legacy_url(commit: &str) -> String {
    format!("https://github.com/lumostone/eth2xk8s/archive/{commit}.zip")
}

/// Busybox for the start-delay init container, pinned.
pub const DELAY_IMAGE: &str = "busybox:1.36.1";

/// The file name of a chart's archive, as the ethpandaops releases and
/// `helm package` name it.
pub fn chart_archive(chart: &str, version: &str) -> String {
    format!("{chart}-{version}.tgz")
}

/// Where the ethpandaops project publishes a chart version.
pub fn chart_url(chart: &str, version: &str) -> String {
    format!(
        "https://github.com/ethpandaops/ethereum-helm-charts/releases/download/{chart}-{version}/{}",
        chart_archive(chart, version)
    )
}
