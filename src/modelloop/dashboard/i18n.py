"""The dashboard's strings in English and Chinese (zh-CN), and how a request picks its language.

``?lang=`` wins (and is remembered in a cookie), then the cookie, then the browser's Accept-Language.
"""

from __future__ import annotations

__all__ = ["LANGS", "pick_lang", "strings"]

LANGS = ("en", "zh-CN")

_EN = {
    "title": "modelloop", "overview": "Overview", "models": "Models", "data": "Data", "trace": "Trace",
    "stage_data": "Data", "stage_model": "Model", "stage_serving": "Serving", "stage_feedback": "Feedback",
    "latest_dataset": "Latest dataset version", "production": "Production model", "none": "none yet",
    "rows": "rows", "columns": "columns", "quality": "quality score", "parents": "parents", "step": "step", "created": "created",
    "version": "version", "versions": "versions", "family": "family", "metrics": "metrics", "aliases": "aliases", "actions": "actions",
    "promote": "Promote to production", "rollback": "Roll back production", "api_key": "API key",
    "confirm": "Confirm", "cancel": "Cancel", "confirm_promote": "Point production at this version?",
    "confirm_rollback": "Point production back at the version it held before?",
    "done": "Done", "read_only": "Read-only: actions need an API key.", "profile": "profile report",
    "request_id": "Request id", "look_up": "Look up", "prediction": "Prediction", "run": "Run",
    "dataset": "Dataset version", "feedback": "Feedback", "no_feedback": "no feedback came back yet",
    "later": "Merged into later dataset versions", "language": "Language", "error": "Error",
    "predictions_logged": "see Trace for a request", "decisions": "retrain decisions", "last_retrain": "Last retrain decision",
    "promoted": "challenger promoted", "kept": "champion kept",
    "key_needed": "This page needs an API key.", "sign_in": "Sign in", "output": "output", "inputs": "inputs",
    "retrains": "Retrains", "at": "when", "trigger": "trigger", "champion": "champion", "challenger": "challenger",
    "outcome": "outcome", "reason": "reason", "slice_recent": "recent slice", "slice_holdout": "frozen holdout", "all_figures": "all figures",
    "no_decisions": "No retrain decision yet: `modelloop retrain` records one.",
    "jobs": "Jobs", "jobs_running": "Running", "jobs_waiting": "Queued", "jobs_finished": "Finished",
    "state": "state", "priority": "priority", "command": "command", "resources": "resources",
    "attempts": "attempts", "waited": "waited", "predicted": "predicted duration", "submitter": "submitter",
    "running_for": "running for", "stopping": "stopping", "cancel_job": "Cancel job",
    "confirm_cancel": "Cancel (or stop) job",
    "serving": "Serving", "monitoring": "Monitoring", "requests_per_second": "Requests/s by model version",
    "latency": "Latency percentiles (logged, per request)", "errors_by_kind": "Errors by kind",
    "batch_sizes": "Records per inference call", "range": "range", "requests": "requests", "mean": "mean",
    "compare_with_production": "compare with production", "source_rows": "Its source and first rows",
    "evaluation_report": "evaluation report (per class)","search_history": "search history",
    "search_chart": "Validation score by trial, and the best so far", "trials": "trials", "study": "study",
    "no_study": "No search study is recorded for this version's run (it was registered without a search).",
    "mlflow_open": "Open it in MLflow's own UI", "value": "score", "bucket": "period", "per_second": "requests/s", "no_requests": "No prediction was logged in this range.",
    "server_since_start": "From this server's metrics since it started",
    "server_elsewhere": "Errors and batch sizes are counted by the prediction server: open these pages under "
                        "`modelloop serve --ui` to see them (the prediction log holds answered requests only).",
    "no_errors": "no error since the server started",
    "drift_by_day": "Drift per feature by day (PSI; red: a test fired)", "alerts": "Alerts fired",
    "no_alerts": "No drift test fired in these days.", "feature": "feature", "tests": "tests fired",
    "live_metrics": "Live metrics from labels that came back", "labels": "labels", "window": "window",
    "labels_all": "labels in all", "holdout": "holdout", "label_coverage": "Label coverage by day",
    "label_share": "share labelled", "day": "day", "share": "share",
    "drift_needs": "A day needs at least this many requests for its drift",
    "reload": "this part updates itself every 5 s (or reload the page).", "drift_computing": "computing", "drift_failed": "drift could not be computed",
    "drift_reload": "Drift of these days is being computed; this part updates itself every 5 s (or reload the page).",
    "live_failed": "live metrics could not be computed", "live_on_labels": "live",
    "today_as_of": "Today's column is as of {at} UTC ({requests} requests then); it is being computed again.",
    "interval_95": "95 % interval",
    "interval_note": "Accuracy's interval is Wilson's, from the share and the test split's rows (n). The other "
                     "metrics' are bootstrap percentiles: the version's model answers its test split again, and "
                     "the metric is computed on 200 resamples of those rows (fixed seed), once per version.",
    "intervals_computing": "The bootstrap intervals are being computed; this part updates itself every 5 s "
                           "(or reload the page).",
    "intervals_failed": "intervals could not be computed",
    "no_model": "No model yet: `modelloop train` registers one.", "compared_with": "compared with the training rows of",
    "lineage": "Lineage", "lineage_note": "dataset version → model version → alias (where it is deployed)",
    "diff": "Compare", "compare_two": "Compare two versions", "schema": "schema", "added": "added",
    "removed": "removed", "changed": "changed", "unchanged": "unchanged", "score": "score",
    "params": "parameters", "size": "size", "variants": "variants", "delta": "change", "same_schema": "same columns and kinds",
    "no_difference": "no difference",
}
_ZH = {
    "title": "modelloop", "overview": "概览", "models": "模型", "data": "数据", "trace": "追踪",
    "stage_data": "数据", "stage_model": "模型", "stage_serving": "服务", "stage_feedback": "反馈",
    "latest_dataset": "最新数据集版本", "production": "生产模型", "none": "暂无",
    "rows": "行数", "columns": "列", "quality": "质量分", "parents": "父版本", "step": "步骤", "created": "创建时间",
    "version": "版本", "versions": "个版本", "family": "模型族", "metrics": "指标", "aliases": "别名", "actions": "操作",
    "promote": "发布到生产", "rollback": "回滚生产版本", "api_key": "API 密钥",
    "confirm": "确认", "cancel": "取消", "confirm_promote": "将生产指向此版本？",
    "confirm_rollback": "将生产指回之前的版本？",
    "done": "完成", "read_only": "只读：操作需要 API 密钥。", "profile": "数据质量报告",
    "request_id": "请求 ID", "look_up": "查询", "prediction": "预测", "run": "运行",
    "dataset": "数据集版本", "feedback": "反馈", "no_feedback": "尚无反馈",
    "later": "已合并到后续数据集版本", "language": "语言", "error": "错误",
    "predictions_logged": "在追踪页查询单个请求", "decisions": "重训决策", "last_retrain": "最近一次重训决策",
    "promoted": "挑战者已发布", "kept": "保留当前模型",
    "key_needed": "此页面需要 API 密钥。", "sign_in": "登录", "output": "输出", "inputs": "输入",
    "retrains": "重训", "at": "时间", "trigger": "触发条件", "champion": "当前模型", "challenger": "挑战者",
    "outcome": "结果", "reason": "原因", "slice_recent": "近期切片", "slice_holdout": "冻结留出集", "all_figures": "全部指标",
    "no_decisions": "尚无重训决策：`modelloop retrain` 会记录一条。",
    "jobs": "任务", "jobs_running": "运行中", "jobs_waiting": "排队中", "jobs_finished": "已结束",
    "state": "状态", "priority": "优先级", "command": "命令", "resources": "资源",
    "attempts": "尝试次数", "waited": "已等待", "predicted": "预计时长", "submitter": "提交者",
    "running_for": "已运行", "stopping": "正在停止", "cancel_job": "取消任务",
    "confirm_cancel": "取消（或停止）任务",
    "serving": "服务", "monitoring": "监控", "requests_per_second": "各模型版本每秒请求数",
    "latency": "延迟分位数（日志，每个请求）", "errors_by_kind": "按类型的错误",
    "batch_sizes": "每次推理的记录数", "range": "范围", "requests": "请求数", "mean": "平均",
    "compare_with_production": "与生产版本比较", "source_rows": "来源与前几行",
    "evaluation_report": "评估报告（各类别）","search_history": "搜索历史",
    "search_chart": "每次试验的验证分数及迄今最佳", "trials": "试验", "study": "研究",
    "no_study": "此版本的运行没有记录搜索研究（注册时未经搜索）。",
    "mlflow_open": "在 MLflow 自带的界面中打开", "value": "分数", "bucket": "时段", "per_second": "每秒请求", "no_requests": "此范围内没有记录的预测。",
    "server_since_start": "来自本服务器启动以来的指标",
    "server_elsewhere": "错误和批大小由预测服务器统计：请在 `modelloop serve --ui` 下打开这些页面查看"
                        "（预测日志只记录已回答的请求）。",
    "no_errors": "服务器启动以来没有错误",
    "drift_by_day": "各特征每日漂移（PSI；红色：检验触发）", "alerts": "已触发的告警",
    "no_alerts": "这些天没有触发漂移检验。", "feature": "特征", "tests": "触发的检验",
    "live_metrics": "由回传标签计算的线上指标", "labels": "标签数", "window": "窗口",
    "labels_all": "标签总数", "holdout": "留出集", "label_coverage": "每日标签覆盖率",
    "label_share": "已标注比例", "day": "日期", "share": "比例",
    "drift_needs": "一天至少需要这么多请求才计算漂移",
    "reload": "此部分每 5 秒自动更新（也可刷新页面）。", "drift_computing": "计算中", "drift_failed": "漂移计算失败",
    "drift_reload": "这些天的漂移正在计算；此部分每 5 秒自动更新（也可刷新页面）。",
    "live_failed": "线上指标计算失败", "live_on_labels": "线上",
    "today_as_of": "今天一列截至 UTC {at}（当时 {requests} 个请求）；正在重新计算。",
    "interval_95": "95% 区间",
    "interval_note": "准确率的区间为 Wilson 区间，由比例和测试集行数 (n) 算出。其他指标的区间为自助法百分位数："
                     "该版本的模型重新预测其测试集，在这些行的 200 次重抽样上计算指标（固定随机种子），每个版本只算一次。",
    "intervals_computing": "自助法区间正在计算；此部分每 5 秒自动更新（也可刷新页面）。",
    "intervals_failed": "区间计算失败",
    "no_model": "尚无模型：`modelloop train` 会注册一个。", "compared_with": "对比训练数据：",
    "lineage": "血缘", "lineage_note": "数据集版本 → 模型版本 → 别名（部署位置）",
    "diff": "比较", "compare_two": "比较两个版本", "schema": "结构", "added": "新增",
    "removed": "删除", "changed": "变更", "unchanged": "未变", "score": "分数",
    "params": "参数", "size": "大小", "variants": "变体", "delta": "变化", "same_schema": "列与类型相同",
    "no_difference": "没有差异",
}
_STRINGS = {"en": _EN, "zh-CN": _ZH}


def strings(lang: str) -> dict[str, str]:
    return _STRINGS.get(lang, _EN)


def _match(tag: str) -> str | None:
    tag = tag.strip().lower()
    if tag.startswith("zh"):
        return "zh-CN"
    if tag.startswith("en"):
        return "en"
    return None


def pick_lang(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language of this page: ``?lang=``, then the cookie, then Accept-Language by q-weight, else en."""
    for explicit in (query, cookie):
        if explicit and (found := _match(explicit)):
            return found
    weighted = []
    for part in (accept_language or "").split(","):
        tag, _, q = part.partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        weighted.append((weight, tag))
    for _, tag in sorted(weighted, key=lambda t: -t[0]):
        if found := _match(tag):
            return found
    return "en"
