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
    // The remote signer's chart (index.yaml digest of web3signer-1.0.6,
    // 2025-01-20: the chart's last change).
    (
        WEB3SIGNER_CHART,
        "1.0.6",
        "b81025d93d4f15262f3193b8a2c5e4322e796b221a4440d8ae275c80cd91f29d",
    ),
];

/// The ethpandaops chart of Web3Signer, used with `signer: web3signer`.
pub const WEB3SIGNER_CHART: &str = "web3signer";
/// Web3Signer's image at the release whose migrations nodeimg pins (not
/// `-distroless`: the chart starts it with `sh -ac`).
pub const WEB3SIGNER_IMAGE: &str = "consensys/web3signer:26.4.2";

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

/// Web3Signer's PostgreSQL migrations (Consensys/web3signer, release 26.4.2,
/// slashing-protection/src/main/resources/migrations/postgresql), each
/// file's sha256. The folder has been unchanged since 2023-09; Web3Signer
/// refuses to start unless `database_version` says 12 (its
/// EXPECTED_DATABASE_VERSION), the version the last of these sets.
pub const WEB3SIGNER_COMMIT: &str = "221996a5ddf6ab7648a8102ee029d9723762c116";
pub const WEB3SIGNER_MIGRATIONS: &[(&str, &str)] = &[
    (
        "V00001__initial.sql",
        "d8856cd663c1282c1f3cd30df6647ece027c07db26ac71ea165d9756b50956f9",
    ),
    (
        "V00002__removeUniqueConstraints.sql",
        "7d84a09715c2561da024d7586f68bfb11796f9008e0606c9c8d24be3cdd31884",
    ),
    (
        "V00003__addLowWatermark.sql",
        "f65ac1275b56f9aaf6546a625d6df8baf55e35cacd9fe952a4afed09bb0f5c4a",
    ),
    (
        "V00004__addGenesisValidatorsRoot.sql",
        "93d3cd900f614755e470fa68b87c2001eac44d784de0127307c7da97b0bf503c",
    ),
    (
        "V00005__xnor_source_target_low_watermark.sql",
        "b2972e1ef3857b1b041f2d551752be31b8aa58d889df5b8ab2c96cf44f8c685a",
    ),
    (
        "V00006__signed_data_indexes.sql",
        "2f0d48500fc750c947f440d51db0fd3f0be7d625f606fe89ee7e45dbbbafd9b4",
    ),
    (
        "V00007__add_db_version.sql",
        "9c468e94a02336ce16dcccd29ffcecfd3af5e452fab529064c5cf34e8a168570",
    ),
    (
        "V00008__signed_data_unique_constraints.sql",
        "be3ddd17bd485a5974e2f4bb7faa0c02935785109f54085c6f89bc097ad4aae8",
    ),
    (
        "V00009__upsert_validators.sql",
        "d4622ec0ee252ef67f1f99828105f0335b9a6edf51c32ab25a304375f2e122fc",
    ),
    (
        "V00010__validator_enabled_status.sql",
        "41c4c5fcc4b97ca371df7bf2654405466633e87ced6806647968121a042df20b",
    ),
    (
        "V00011__bigint_indexes.sql",
        "cab58ae2e881e3318d683ff7e1a57ec936e56cd0bb71e1f527f8616c2766475b",
    ),
    (
        "V00012__add_highwatermark_metadata.sql",
        "ed66b3c74f365ccf982f0233f11668d2bf45ee0c3a59e68cacaa623b32d8d857",
    ),
];

/// The `database_version` Web3Signer at that release demands before it
/// starts (EXPECTED_DATABASE_VERSION): the last migration sets it.
pub const WEB3SIGNER_DB_VERSION: u32 = 12;

/// Where a migration file of Web3Signer is at `commit`.
pub fn migration_url(commit: &str, file: &str) -> String {
    format!(
        "https://raw.githubusercontent.com/Consensys/web3signer/{commit}/slashing-protection/src/main/resources/migrations/postgresql/{file}"
    )
}

/// The folder of `--charts` that holds the migrations of `commit`.
pub fn migrations_folder(commit: &str) -> String {
    format!("web3signer-migrations-{commit}")
}
