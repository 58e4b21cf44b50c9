//! Mosia's dataset: the documented fixture plus generated `ultimosProtocolos` items for the
//! other beneficiaries, kept newest first.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::dataset::beneficiary_by_key;

pub(super) const MOSIA_FIXTURE: &str =
    include_str!("../../fixtures/mosia/ultimos-protocolos.200.json");
pub(super) const MOSIA_FIXTURE_KEY: &str = "13331584754";
/// Public examples answer `statusCode: 403` inside a successful envelope; this one does too.
const MOSIA_QUIRKY_403_KEY: &str = "39857120466";

type Code = (i64, &'static str);
const ATIVO: Code = (171, "Atendimento Ativo");
const AUTO: Code = (155, "Auto-atendimento");
const RECEPTIVO: Code = (160, "Atendimento Receptivo");
const OUVIDORIA: Code = (182, "Ouvidoria");
const EM_ATENDIMENTO: Code = (386, "Em Atendimento (externo)");
const REALIZADO: Code = (310, "Realizado");
const ABERTO: Code = (301, "Aberto");
const CANCELADO: Code = (315, "Cancelado");
const AGUARDANDO: Code = (392, "Aguardando Beneficiário");

struct MosiaRow {
    key: &'static str,
    /// Local time in Brazil (UTC-3), `YYYY-MM-DD HH:MM:SS`.
    registered: &'static str,
    /// 0 keeps `data_atualizacao` equal to `data_registro`, as Mosia does for untouched items.
    updated_after_min: i64,
    kind: Code,
    status: Code,
    subject: Option<&'static str>,
    /// Whether names carry the `" - <chaveUnica>"` suffix Mosia sometimes appends.
    suffix: bool,
    /// Someone else opened it (a parent), by unique key.
    requester: Option<&'static str>,
}

const fn mosia(
    key: &'static str,
    registered: &'static str,
    updated_after_min: i64,
    (kind, status): (Code, Code),
    subject: Option<&'static str>,
    suffix: bool,
    requester: Option<&'static str>,
) -> MosiaRow {
    MosiaRow {
        key,
        registered,
        updated_after_min,
        kind,
        status,
        subject,
        suffix,
        requester,
    }
}

const HERNANDES_KEY: &str = "28476190350";
const MARIA_KEY: &str = "45120987611";
const JOAO_KEY: &str = "73019845620";
const ROBERTO_KEY: &str = "39857120466";

#[rustfmt::skip]
const MOSIA_ROWS: &[MosiaRow] = &[
    mosia(HERNANDES_KEY, "2023-04-15 16:30:00", 60, (RECEPTIVO, REALIZADO), Some("Autorização de exame"), false, None),
    mosia(HERNANDES_KEY, "2023-06-01 08:45:50", 0, (AUTO, REALIZADO), None, true, None),
    mosia(HERNANDES_KEY, "2023-06-20 10:02:11", 35, (RECEPTIVO, REALIZADO), Some("Envio de documentos"), true, None),
    mosia(HERNANDES_KEY, "2023-06-21 14:10:07", 1440, (ATIVO, EM_ATENDIMENTO), Some("Autorização de exame"), true, None),
    mosia(MARIA_KEY, "2024-01-09 09:12:40", 25, (RECEPTIVO, REALIZADO), Some("Segunda via de boleto"), true, None),
    mosia(MARIA_KEY, "2024-02-14 15:03:22", 0, (AUTO, REALIZADO), None, false, None),
    mosia(MARIA_KEY, "2024-03-02 11:47:05", 180, (ATIVO, REALIZADO), Some("Autorização de exame"), true, None),
    mosia(MARIA_KEY, "2024-03-28 08:20:13", 0, (AUTO, REALIZADO), Some("Carteirinha digital"), false, None),
    mosia(MARIA_KEY, "2024-04-11 13:55:48", 2880, (RECEPTIVO, CANCELADO), Some("Reembolso consulta"), true, None),
    mosia(MARIA_KEY, "2024-05-06 10:30:31", 45, (RECEPTIVO, REALIZADO), None, true, None),
    mosia(MARIA_KEY, "2024-05-23 17:08:09", 0, (AUTO, REALIZADO), Some("Rede credenciada"), false, None),
    mosia(MARIA_KEY, "2024-06-10 09:41:57", 1440, (OUVIDORIA, REALIZADO), Some("Reclamação de atendimento"), true, None),
    mosia(MARIA_KEY, "2024-06-27 14:16:26", 90, (ATIVO, AGUARDANDO), Some("Envio de documentos"), false, None),
    mosia(MARIA_KEY, "2024-07-03 08:05:44", 0, (AUTO, ABERTO), None, true, None),
    mosia(MARIA_KEY, "2024-07-15 16:22:18", 30, (RECEPTIVO, EM_ATENDIMENTO), Some("Reembolso exame"), true, None),
    mosia(MARIA_KEY, "2024-07-18 11:02:51", 5, (ATIVO, EM_ATENDIMENTO), Some("Autorização de exame"), false, None),
    mosia(JOAO_KEY, "2024-03-27 10:15:00", 60, (RECEPTIVO, REALIZADO), Some("Autorização de exame"), true, Some(MARIA_KEY)),
    mosia(JOAO_KEY, "2024-06-14 09:00:12", 0, (AUTO, REALIZADO), None, false, None),
    mosia(JOAO_KEY, "2024-07-09 14:40:36", 120, (RECEPTIVO, EM_ATENDIMENTO), Some("Tratamento odontológico"), true, Some(MARIA_KEY)),
    mosia(ROBERTO_KEY, "2024-05-02 09:30:00", 15, (RECEPTIVO, REALIZADO), Some("Alteração cadastral"), true, None),
    mosia(ROBERTO_KEY, "2024-05-20 12:12:12", 0, (AUTO, REALIZADO), Some("Carteirinha digital"), true, None),
    mosia(ROBERTO_KEY, "2024-06-05 16:45:27", 240, (OUVIDORIA, CANCELADO), None, false, None),
    mosia(ROBERTO_KEY, "2024-06-30 10:05:09", 30, (RECEPTIVO, REALIZADO), Some("Segunda via de boleto"), true, None),
    mosia(ROBERTO_KEY, "2024-07-16 08:58:41", 0, (AUTO, ABERTO), Some("Reembolso consulta"), false, None),
];

pub(super) struct MosiaBeneficiary {
    /// Newest first, ready to be sliced by `totalProtocolos`.
    pub(super) items: Vec<Value>,
    pub(super) envelope_status: u16,
}

pub(super) fn mosia_seed() -> HashMap<String, MosiaBeneficiary> {
    let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();

    let fixture: Value = serde_json::from_str(MOSIA_FIXTURE).expect("Mosia fixture is JSON");
    let fixture_items = fixture["data"]
        .as_array()
        .cloned()
        .expect("Mosia fixture has a data array");
    by_key.insert(MOSIA_FIXTURE_KEY.to_owned(), fixture_items);

    let brazil = chrono::FixedOffset::west_opt(3 * 3600).expect("valid offset");
    for (seq, row) in MOSIA_ROWS.iter().enumerate() {
        let local = chrono::NaiveDateTime::parse_from_str(row.registered, "%Y-%m-%d %H:%M:%S")
            .expect("dataset dates are valid");
        let at = local
            .and_local_timezone(brazil)
            .single()
            .expect("fixed offsets are unambiguous");
        // Milliseconds make the numbers look like the real ones and keep them distinct.
        let registered = at.timestamp_millis() + (seq as i64 * 137) % 1000;
        let updated = if row.updated_after_min == 0 {
            registered
        } else {
            registered + row.updated_after_min * 60_000 + 517
        };
        let holder = mosia_person(row.key, row.suffix);
        let requester = row
            .requester
            .map_or_else(|| holder.clone(), |key| mosia_person(key, row.suffix));
        let item = json!({
            "protocolo": format!("11111{}{:06}", local.format("%Y%m%d"), 101 + seq),
            "tipoOcorrencia": { "id": row.kind.0, "descricao": row.kind.1 },
            "data_registro": registered.to_string(),
            "data_atualizacao": updated.to_string(),
            "status": { "id": row.status.0, "descricao": row.status.1 },
            "assunto": row.subject,
            "beneficiario": holder,
            "solicitante": requester,
        });
        by_key.entry(row.key.to_owned()).or_default().push(item);
    }

    by_key
        .into_iter()
        .map(|(key, mut items)| {
            items.sort_by_key(|item| std::cmp::Reverse(epoch_ms(&item["data_registro"])));
            let envelope_status = if key == MOSIA_QUIRKY_403_KEY {
                403
            } else {
                200
            };
            let beneficiary = MosiaBeneficiary {
                items,
                envelope_status,
            };
            (key, beneficiary)
        })
        .collect()
}

fn mosia_person(unique_key: &str, suffix: bool) -> Value {
    let name = beneficiary_by_key(unique_key).map_or("", |b| b.name);
    let name = if suffix {
        format!("{name} - {unique_key}")
    } else {
        name.to_owned()
    };
    json!({ "nome": name, "chaveUnica": unique_key })
}

pub(super) fn epoch_ms(value: &Value) -> i64 {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}
