//! The dashboard's words in English and Korean: one table, each phrase beside its translation,
//! and the language of a request — the signed-in user's `language`, or for the operator token
//! and before sign-in the browser's `Accept-Language`.
//!
//! The Korean reuses the e-mails' words where they have one (위험 / 경고 for fatal / warning,
//! 복구 for resolved, 일시 정지 for paused), so the product speaks one language. A phrase with
//! `{}` is filled in order by [`fill`].

use axum::http::{HeaderMap, header};

use crate::api::CellState;
use crate::config::raw::{Language, Severity};

/// `struct Words` with one field per phrase, and the English and Korean tables.
macro_rules! phrases {
    ($($field:ident: $en:literal, $ko:literal;)+) => {
        /// Every phrase a page shows, in one language.
        pub struct Words {
            /// The page's `<html lang>`.
            pub lang: &'static str,
            $(pub $field: &'static str,)+
        }

        pub const EN: Words = Words { lang: "en", $($field: $en,)+ };
        pub const KO: Words = Words { lang: "ko", $($field: $ko,)+ };

        /// Every phrase with its translation, for the tests.
        #[cfg(test)]
        const PAIRS: &[(&str, &str)] = &[$(($en, $ko)),+];
    };
}

phrases! {
    // The layout and the pages every part shares.
    projects: "Projects", "프로젝트";
    all_servers: "All servers", "전체 서버";
    compound_eye: "Compound eye", "겹눈 보기";
    server_list: "Servers", "서버 목록";
    alerts: "Alerts", "알림";
    port_monitors: "Port monitors", "포트 감시";
    availability: "Availability", "가용성";
    reports: "Reports", "보고서";
    operator: "operator", "운영자";
    signed_in: "signed in", "로그인됨";
    sign_out: "Sign out", "로그아웃";
    sign_in: "Sign in", "로그인";
    sign_in_hint: "Paste an API token: your user token, or the operator token serve was started with.",
        "API 토큰을 붙여 넣으세요: 사용자 토큰, 또는 serve를 시작할 때 준 운영자 토큰입니다.";
    api_token: "API token", "API 토큰";
    too_many_attempts: "Too many sign-in attempts; try again in {} s.", "로그인 시도가 너무 많습니다. {}초 후에 다시 시도하세요.";
    unknown_token: "Unknown token.", "알 수 없는 토큰입니다.";
    not_found: "Not found", "찾을 수 없음";
    not_found_text: "There is no such page, or it is not yours to see.", "그런 페이지가 없거나, 볼 수 없는 페이지입니다.";
    back_to_projects: "Back to the projects", "프로젝트 목록으로";
    error: "Error", "오류";
    went_wrong: "Something went wrong", "문제가 생겼습니다";
    db_unreadable: "The database could not be read; see serve's log.", "데이터베이스를 읽지 못했습니다. serve의 로그를 보세요.";
    bad_request: "Bad request", "잘못된 요청";
    nav_main: "Main", "주 메뉴";
    nav_project: "Project", "프로젝트 메뉴";
    nav_pages: "Pages", "페이지";
    nav_range: "Range", "구간";
    nav_year: "Year", "연도";
    nav_period: "Period", "기간";
    nav_periods: "Periods", "기간 이동";

    // The projects page.
    applied_revision: "Applied revision: ", "적용된 리비전: ";
    none_yet: "none yet", "아직 없음";
    no_projects: "No project is in this token's scope.", "이 토큰으로 볼 수 있는 프로젝트가 없습니다.";
    without_group: "Without a group", "그룹 없음";
    n_servers: "{} servers", "서버 {}대";
    fatal_firing: "fatal alerts firing", "발생 중인 위험 알림";
    warning_firing: "warning alerts firing", "발생 중인 경고 알림";
    n_fatal: "✕ {} fatal", "✕ 위험 {}";
    n_warning: "! {} warning", "! 경고 {}";
    revision: "revision ", "리비전 ";
    rejected: "The newest revision was rejected", "최신 리비전이 거부되었습니다";
    rejected_counts: " with {} errors and {} warnings; the applied revision keeps running.",
        ": 오류 {}개, 경고 {}개. 적용된 리비전이 계속 실행됩니다.";

    // States, severities and the words of the compound eye.
    ok: "ok", "정상";
    warning: "warning", "경고";
    fatal: "fatal", "위험";
    paused: "paused", "일시 정지";
    nodata: "nodata", "데이터 없음";
    traffic_max: "Traffic max ", "트래픽 최대 ";
    eye_hint: "Gauges: CPU, memory, fullest disk, network in, network out. Hover or focus a cell for its numbers.",
        "막대: CPU, 메모리, 가장 찬 디스크, 네트워크 수신, 송신. 칸에 마우스를 올리거나 포커스하면 수치가 보입니다.";
    memory_word: "memory", "메모리";
    disk_word: "disk", "디스크";
    in_word: "in", "수신";
    out_word: "out", "송신";

    // The server list.
    col_state: "State", "상태";
    col_os: "OS", "OS";
    col_ips: "IPs", "IP";
    col_cpu: "CPU %", "CPU %";
    col_memory: "Memory %", "메모리 %";
    col_disk: "Disk % all / max", "디스크 % 전체 / 최대";
    col_network: "Network all / max", "네트워크 전체 / 최대";
    col_vendor: "CPU vendor", "CPU 제조사";
    col_ram: "RAM", "RAM";
    col_uptime: "Uptime days", "가동 일수";
    col_io: "Disk IO % all / max", "디스크 IO % 전체 / 최대";
    col_iops: "IOPS all / max", "IOPS 전체 / 최대";
    col_bps: "Disk bytes/s all / max", "디스크 bytes/s 전체 / 최대";
    col_tags: "Tags", "태그";
    tag_label: "Tag ", "태그 ";
    any: "any", "전체";
    search: "Search ", "검색 ";
    name_or_ip: "name or IP", "이름 또는 IP";
    filter: "Filter", "필터";
    clear: "Clear", "지우기";
    columns: "Columns", "열 선택";
    no_server_matches: "No servers match.", "맞는 서버가 없습니다.";
    servers_shown: "Servers {}–{} of {}", "서버 {}–{} (전체 {}대)";
    name: "Name", "이름";
    previous: "← Previous", "← 이전";
    next: "Next →", "다음 →";
    page_of: "page {} of {}", "{} / {} 페이지";

    // The server page.
    host: "Host", "호스트";
    os: "OS", "OS";
    kernel: "Kernel", "커널";
    cpu: "CPU", "CPU";
    ram: "RAM", "RAM";
    addresses: "Addresses", "주소";
    uptime: "Uptime", "가동 시간";
    n_days: "{} days", "{}일";
    tags: "Tags", "태그";
    policy: "Policy", "정책";
    none: "none", "없음";
    last_report: "Last report", "마지막 보고";
    never: "never", "없음";
    memory: "Memory", "메모리";
    disk_fullest: "Disk (fullest)", "디스크 (가장 찬 곳)";
    network_in: "Network in", "네트워크 수신";
    network_out: "Network out", "네트워크 송신";
    range_back: "one range back", "한 구간 이전";
    range_forward: "one range forward", "한 구간 이후";
    now: "now", "현재";
    live: "live", "실시간";
    processes: "Processes", "프로세스";
    n_running: "({} running)", "(실행 중 {}개)";
    memory_pct: "Memory %", "메모리 %";
    count: "Count", "개수";
    recent_alerts: "Recent alerts", "최근 알림";
    all_alerts_of: "all alerts of {}", "{}의 모든 알림";
    none_dot: "None.", "없음.";
    started: "Started", "발생 시각";
    severity: "Severity", "위험도";
    state: "State", "상태";
    rule: "Rule", "규칙";
    message: "Message", "메시지";
    firing: "firing", "발생 중";
    resolved: "resolved", "복구";
    acknowledged: "acknowledged", "확인됨";
    flapping: "⇅ flapping", "⇅ 반복 변동";
    flapping_title: "it changed state too often: its notifications are held back until it is stable",
        "상태가 너무 자주 바뀌어, 안정될 때까지 알림을 보내지 않습니다";
    chart_cpu: "CPU usage", "CPU 사용률";
    chart_memory: "Memory usage", "메모리 사용률";
    chart_disk: "Disk usage (fullest mount)", "디스크 사용률 (가장 찬 마운트)";
    chart_io: "Disk IO busy (busiest device)", "디스크 IO 사용률 (가장 바쁜 장치)";
    chart_network: "Network (busiest interface)", "네트워크 (가장 바쁜 인터페이스)";
    line_usage: "usage", "사용률";
    line_used: "used", "사용";
    line_busy: "busy", "사용률";
    no_data_in_range: "no data in this range", "이 구간에는 데이터가 없습니다";

    // A server's detail views.
    nav_details: "Details", "상세 보기";
    overview: "Overview", "개요";
    network: "Network", "네트워크";
    detail_title: "{}: {}", "{}: {}";
    chart_cpu_split: "CPU by kind", "CPU 사용 구분";
    line_user: "user", "사용자";
    line_system: "system", "시스템";
    line_nice: "nice", "nice (낮은 우선순위)";
    chart_cpu_idle: "CPU idle", "CPU 유휴";
    chart_iowait: "I/O wait", "I/O 대기";
    chart_steal: "Steal", "스틸 (가상 머신 대기)";
    chart_irq: "Hardware interrupts (irq)", "하드웨어 인터럽트 (irq)";
    chart_softirq: "Software interrupts (softirq)", "소프트웨어 인터럽트 (softirq)";
    chart_load: "Load average", "부하 평균";
    line_1m: "1 min", "1분";
    line_5m: "5 min", "5분";
    line_15m: "15 min", "15분";
    chart_memory_free: "Free memory", "여유 메모리";
    chart_memory_available: "Available memory", "사용 가능한 메모리";
    chart_swap: "Swap usage", "스왑 사용률";
    chart_page_faults: "Page faults", "페이지 폴트";
    line_free: "free", "여유";
    line_available: "available", "사용 가능";
    line_faults: "faults/s", "폴트/초";
    interface_n: "Interface {}", "인터페이스 {}";
    mount_n: "Mount {}", "마운트 {}";
    device_n: "Device {}", "장치 {}";
    chart_traffic: "Traffic", "트래픽";
    chart_packets: "Packets", "패킷";
    chart_errors: "Errors", "오류";
    chart_drops: "Drops", "드롭";
    chart_space: "Space used", "공간 사용률";
    chart_bytes: "Used / free", "사용 / 여유";
    chart_io_busy: "IO busy", "IO 사용률";
    chart_iops: "IOPS", "IOPS";
    chart_throughput: "Read / write", "읽기 / 쓰기";
    chart_queue: "Queue", "대기열";
    line_iops: "operations/s", "작업/초";
    line_read: "read", "읽기";
    line_write: "write", "쓰기";
    line_queue: "requests", "요청";
    no_interfaces: "No interface reported in this range.", "이 구간에 보고된 인터페이스가 없습니다.";
    no_mounts: "No mount reported in this range.", "이 구간에 보고된 마운트가 없습니다.";
    no_devices: "No device reported in this range.", "이 구간에 보고된 장치가 없습니다.";

    // The alert history and the alert page.
    server: "Server", "서버";
    from: "From", "시작";
    to: "to", "끝";
    apply: "Apply", "적용";
    alerts_meta: "Newest first; times in {}. Dates pick the alerts active at any time on those days.",
        "최신 순이며 시각은 {} 기준입니다. 날짜를 고르면 그 날들에 한때라도 발생 중이던 알림이 보입니다.";
    no_alert_matches: "No alert matches.", "맞는 알림이 없습니다.";
    no_alerts_yet: "No alerts yet.", "아직 알림이 없습니다.";
    description: "Description", "내용";
    snapshot: "Snapshot", "스냅숏";
    snapshot_title: "at firing: CPU, memory, fullest disk, busiest interface in / out",
        "발생 시점: CPU, 메모리, 가장 찬 디스크, 가장 바쁜 인터페이스 수신 / 송신";
    fullest_disk: "fullest disk", "가장 찬 디스크";
    busiest_interface: "busiest interface in / out", "가장 바쁜 인터페이스 수신 / 송신";
    mem_short: "mem", "메모리";
    net_short: "net", "네트워크";
    newer: "← Newer", "← 최근";
    older: "Older →", "이전 →";
    page_n: "Page {}", "{} 페이지";
    alert_n: "Alert {}", "알림 {}";
    all_alerts_of_project: "← All alerts of {}", "← {}의 모든 알림";
    resolved_at: "Resolved", "복구 시각";
    duration: "Duration", "지속 시간";
    so_far: " so far", " (진행 중)";
    around_start: "Around the start", "발생 전후";
    around_meta: "5 minutes either side; the dashed line marks the start", "앞뒤 5분, 점선이 발생 시각입니다";
    no_snapshot: "none: this alert comes from a port or down-check, not from a host report",
        "없음: 이 알림은 호스트 보고가 아니라 포트 감시나 다운체크에서 왔습니다";
    snapshot_at_firing: "Snapshot at firing", "발생 시점 스냅숏";
    no_cpu_yet: "not in that report (an agent's first report has no CPU figures: they need two samples)",
        "그 보고에는 없음 (에이전트의 첫 보고에는 CPU 수치가 없습니다: 표본이 두 번 필요합니다)";
    load: "Load", "부하";
    swap: "swap", "스왑";
    disk_of: "Disk {}", "디스크 {}";
    io_of: "IO {}", "IO {}";
    busy_pct: " % busy", " % 사용";
    net_of: "Net {}", "네트워크 {}";
    processes_at_firing: "Processes at firing", "발생 시점 프로세스";
    n_busiest_first: "({}, busiest CPU first)", "({}개, CPU 사용 순)";
    pid: "PID", "PID";
    user: "User", "사용자";
    rss: "RSS", "RSS";
    view_all_processes: "View all {} processes", "프로세스 {}개 모두 보기";
    show_top: "Show the top {}", "상위 {}개만 보기";
    notifications: "Notifications", "알림 발송";
    notifications_hidden: "Who was told and how delivery went is shown to project admins, group owners and admins, and the operator.",
        "누구에게 알렸고 전달이 어떻게 되었는지는 프로젝트 관리자, 그룹 소유자와 관리자, 운영자에게만 보입니다.";
    none_sent: "None were sent for this alert.", "이 알림으로 보낸 것이 없습니다.";
    created: "Created", "생성 시각";
    kind: "Kind", "종류";
    medium: "Medium", "수단";
    channel: "Channel", "채널";
    recipient: "Recipient", "받는 사람";
    delivery: "Delivery", "전달";
    attempts: "Attempts", "시도";
    read_at: "read", "읽음";
    attempt_ok: "ok", "성공";
    acknowledgements: "Acknowledgements", "확인 메모";
    nobody_acknowledged: "Nobody has acknowledged this alert.", "아직 아무도 이 알림을 확인하지 않았습니다.";
    note: "Note", "메모";
    note_hint: "(what was done about it; at most {} characters)", "(무엇을 했는지, 최대 {}자)";
    acknowledge: "Acknowledge", "확인";
    no_more_notes: "This alert has resolved, so it takes no more notes; if it fires again, acknowledge the new alert.",
        "이 알림은 복구되어 더 이상 메모를 받지 않습니다. 다시 발생하면 새 알림을 확인하세요.";
    note_after_resolve: "This alert has resolved, so the note was not recorded; if it fires again, acknowledge the new alert.",
        "이 알림은 복구되어 메모를 기록하지 않았습니다. 다시 발생하면 새 알림을 확인하세요.";
    note_not_recorded: "The note was not recorded: {}.", "메모를 기록하지 않았습니다: {}.";
    form_refused: "Form refused", "양식 거부";
    form_refused_text: "This form did not come from a page of this dashboard in your session, so nothing was recorded.",
        "이 양식은 지금 세션의 이 대시보드 페이지에서 온 것이 아니어서 아무것도 기록하지 않았습니다.";
    form_refused_hint: "Reload the alert's page and send the note again.", "알림 페이지를 다시 불러와 메모를 다시 보내세요.";
    unit_s: " s", "초";
    unit_min: " min", "분";
    unit_h: " h", "시간";
    unit_d: " d", "일";
    kind_fired: "fired", "장애";
    kind_escalated: "escalated", "상승";
    kind_resolved: "resolved", "복구";
    kind_event: "event", "이벤트";
    kind_reminder: "reminder", "지속";
    kind_escalation: "escalation", "미확인";
    kind_flapping: "flapping", "반복변동";
    kind_settled: "settled", "안정";
    kind_report: "report", "보고서";
    pending: "pending", "대기";
    sent: "sent", "보냄";
    not_sent: "not sent", "보내지 않음";
    failed: "failed", "실패";
    delivered: "delivered", "전달됨";

    // The port monitors and the disconnect log.
    times_in: "Times in {}.", "시각은 {} 기준입니다.";
    availability_timelines: "Availability timelines", "가용성 타임라인";
    no_port_monitors: "This project has no port monitors.", "이 프로젝트에는 포트 감시가 없습니다.";
    monitor: "Monitor", "감시";
    ports: "Ports", "포트";
    email: "E-mail", "메일";
    sms: "SMS", "SMS";
    on: "on", "켬";
    off: "off", "끔";
    up: "up", "정상";
    down: "down", "다운";
    unknown: "unknown", "미확인";
    not_checked_yet: "not checked yet", "아직 확인하지 않음";
    alert_of_severity: "alert: {}", "알림: {}";
    check_up_ms: "up, {} ms, checked {}", "정상, {} ms, {} 확인";
    check_up: "up, checked {}", "정상, {} 확인";
    check_down: "down: {}, checked {}", "다운: {}, {} 확인";
    down_checks: "Down-checks", "다운체크";
    no_down_checks: "This project has no down-check pairs.", "이 프로젝트에는 다운체크 쌍이 없습니다.";
    detector_target: "Detector → target", "감지 서버 → 대상";
    address: "Address", "주소";
    verdict: "Verdict", "판정";
    last_result: "Last result", "마지막 결과";
    liveness: "(liveness {})", "(생존 확인 {})";
    verdict_up: "up", "정상";
    verdict_service_down: "service down", "서비스 다운";
    verdict_host_down: "host down", "호스트 다운";
    verdict_unknown: "unknown", "알 수 없음";
    notifications_in: "Notifications in {}", "{}년 알림 발송";
    stats_meta: "E-mails and SMS about each port monitor's alerts, per month in {}: sent; not sent on purpose \
        (maintenance, a parent down, outside the recipient's hours); failed (given up, bounced or reported undelivered); \
        read (the mail's image was fetched) and delivered (the SMS gateway reported it) among the sent.",
        "포트 감시마다 그 알림으로 보낸 메일과 SMS를 {} 기준 월별로 셉니다: 보냄, 일부러 보내지 않음 \
        (점검 중, 상위 대상 다운, 받는 사람의 수신 시간 밖), 실패 (포기, 반송 또는 미전달 보고), \
        보낸 것 중 읽음 (메일의 이미지를 불러옴)과 전달됨 (SMS 게이트웨이가 알려 옴).";
    none_this_year: "none this year", "올해 없음";
    removed: "(removed)", "(삭제됨)";
    month: "Month", "월";
    year_total: "Year", "연간";
    sent_h: "Sent", "보냄";
    not_sent_h: "Not sent", "보내지 않음";
    failed_h: "Failed", "실패";
    read_h: "Read", "읽음";
    delivered_h: "Delivered", "전달됨";
    checked: "Checked", "확인 주기";
    every_timeout: "every {}, timeout {}", "{}마다, 제한 시간 {}";
    alerts_after: "after {} failed checks, resolved after {} good", "{}번 실패하면 알림, {}번 성공하면 복구";
    disconnect_log: "Disconnect log", "끊김 기록";
    all_years: "All years", "전체 연도";
    n_failed_check: "{} failed check", "실패 {}회";
    n_failed_checks: "{} failed checks", "실패 {}회";
    times_in_after: "; times in {}.", ". 시각은 {} 기준입니다.";
    level_year: "Year", "연도";
    level_month: "Month", "월";
    level_day: "Day", "일";
    level_hour: "Hour", "시";
    failed_checks: "Failed checks", "실패한 확인";
    the_newest: "(the newest {})", "(최근 {}건)";
    time: "Time", "시각";
    port: "Port", "포트";

    // Availability.
    today: "Today", "오늘";
    hours_24: "24 hours", "24시간";
    days_7: "7 days", "7일";
    days_30: "30 days", "30일";
    earlier: "earlier", "이전";
    later: "later", "이후";
    partly_down: "partly down", "일부 다운";
    no_data: "no data", "데이터 없음";
    buckets_of: "Buckets of {} minutes; times in {}.", "{}분 단위이며 시각은 {} 기준입니다.";
    no_targets: "This project has no port monitors or down-checks.", "이 프로젝트에는 포트 감시나 다운체크가 없습니다.";
    uptime_word: "uptime", "가동률";
    n_good_failed: "{} good, {} failed", "성공 {}, 실패 {}";
    span_title: "{} {} – {}: {} good, {} failed checks", "{} {} – {}: 성공 {}, 실패 {}";

    // Reports.
    period: "Period", "기간";
    show: "Show", "보기";
    daily: "Daily", "일일";
    weekly: "Weekly", "주간";
    monthly: "Monthly", "월간";
    previous_day: "← Previous day", "← 전날";
    previous_week: "← Previous week", "← 지난주";
    previous_month: "← Previous month", "← 지난달";
    next_day: "Next day →", "다음 날 →";
    next_week: "Next week →", "다음 주 →";
    next_month: "Next month →", "다음 달 →";
    summary: "Summary", "요약";
    disk: "Disk", "디스크";
    app_detail: "Application detail", "애플리케이션 상세";
    export_csv: "Export CSV", "CSV 내보내기";
    print: "Print", "인쇄";
    report_title: "{} report · {} · {}", "{} 보고서 · {} · {}";
    not_over_yet: "the period is not over yet", "기간이 아직 끝나지 않음";
    none_rows: "None", "없음";
    back_to_reports: "Back to the reports", "보고서로 돌아가기";
}

impl Words {
    /// The table of `language`.
    pub fn of(language: Language) -> &'static Words {
        match language {
            Language::En => &EN,
            Language::Ko => &KO,
        }
    }

    pub fn language(&self) -> Language {
        if self.lang == "ko" { Language::Ko } else { Language::En }
    }

    pub fn severity(&self, severity: Severity) -> &'static str {
        match severity {
            Severity::Warning => self.warning,
            Severity::Fatal => self.fatal,
        }
    }

    pub fn cell_state(&self, state: CellState) -> &'static str {
        match state {
            CellState::Ok => self.ok,
            CellState::Warning => self.warning,
            CellState::Fatal => self.fatal,
            CellState::Paused => self.paused,
            CellState::NoData => self.nodata,
        }
    }

    /// A word the pages keep in `data-` attributes (alert states, port states, verdicts,
    /// delivery states, notification kinds), as this language shows it; an unknown word as is.
    pub fn word(&self, word: &str) -> String {
        let known = match word {
            "ok" => self.ok,
            "paused" => self.paused,
            "nodata" => self.nodata,
            "warning" => self.warning,
            "fatal" => self.fatal,
            "firing" => self.firing,
            "resolved" => self.resolved,
            "up" => self.up,
            "down" => self.down,
            "unknown" => self.unknown,
            "service_down" => self.verdict_service_down,
            "host_down" => self.verdict_host_down,
            "pending" => self.pending,
            "sent" => self.sent,
            "not_sent" => self.not_sent,
            "failed" => self.failed,
            "delivered" => self.delivered,
            "fired" => self.kind_fired,
            "escalated" => self.kind_escalated,
            "event" => self.kind_event,
            "reminder" => self.kind_reminder,
            "escalation" => self.kind_escalation,
            "flapping" => self.kind_flapping,
            "settled" => self.kind_settled,
            "report" => self.kind_report,
            other => return other.replace('_', " "),
        };
        known.to_string()
    }

    /// A month's short name: `Mar`, `3월`.
    pub fn month_name(&self, month: usize) -> String {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        match self.language() {
            Language::En => MONTHS.get(month.wrapping_sub(1)).copied().unwrap_or_default().to_string(),
            Language::Ko => format!("{month}월"),
        }
    }
}

/// `phrase` with each `{}` replaced by the next of `args`.
pub fn fill(phrase: &str, args: &[&dyn std::fmt::Display]) -> String {
    let mut out = String::with_capacity(phrase.len() + 16);
    let mut parts = phrase.split("{}");
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if let Some(arg) = args.get(i) {
            out.push_str(&arg.to_string());
        }
        out.push_str(part);
    }
    out
}

/// The language a browser asks for in `Accept-Language`: Korean when it ranks Korean above
/// English (and above any language it weights higher that the dashboard does not have), else
/// English.
pub fn of_browser(headers: &HeaderMap) -> &'static Words {
    let Some(value) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) else { return &EN };
    Words::of(preferred(value))
}

/// The first of English and Korean in `accept` (an `Accept-Language` value) by weight, ties
/// in the order written; English when it names neither.
fn preferred(accept: &str) -> Language {
    let mut best: Option<(f32, Language)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let weight = parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or("");
        let language = match primary {
            "ko" => Language::Ko,
            "en" => Language::En,
            _ => continue,
        };
        if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
            best = Some((weight, language));
        }
    }
    best.map_or(Language::En, |(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_gets_korean_when_it_ranks_korean_first() {
        assert_eq!(preferred("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), Language::Ko);
        assert_eq!(preferred("en-US,en;q=0.9,ko;q=0.8"), Language::En);
        assert_eq!(preferred("fr-FR,fr;q=0.9,ko;q=0.5,en;q=0.4"), Language::Ko, "the first the dashboard has");
        assert_eq!(preferred("en;q=0.5, ko;q=0.7"), Language::Ko, "by weight, not by place");
        assert_eq!(preferred("ko;q=0, en"), Language::En, "q=0 refuses a language");
        assert_eq!(preferred("de"), Language::En);
        assert_eq!(preferred(""), Language::En);
        assert_eq!(preferred("KO"), Language::Ko);
    }

    #[test]
    fn phrases_fill_their_places_in_order() {
        assert_eq!(fill(EN.servers_shown, &[&1, &100, &10_000]), "Servers 1–100 of 10000");
        assert_eq!(fill(KO.servers_shown, &[&1, &100, &10_000]), "서버 1–100 (전체 10000대)");
        assert_eq!(fill(KO.all_alerts_of, &[&"web-01"]), "web-01의 모든 알림");
        assert_eq!(fill("{} and {}", &[&1]), "1 and ");
    }

    #[test]
    fn korean_speaks_the_mails_words() {
        assert_eq!((KO.severity(Severity::Fatal), KO.severity(Severity::Warning)), ("위험", "경고"));
        assert_eq!(KO.word("resolved"), "복구");
        assert_eq!(EN.word("service_down"), "service down");
        assert_eq!(KO.month_name(3), "3월");
        assert_eq!(EN.month_name(12), "Dec");
        // Every phrase has as many places in both languages, and a Korean text of its own
        // unless it is a word both share (CPU, RAM, SMS).
        for (en, ko) in PAIRS {
            assert_eq!(en.matches("{}").count(), ko.matches("{}").count(), "{en} / {ko}");
            assert!(!ko.is_empty(), "{en}");
        }
    }
}
