"""The flow the UI tests run: metrics over epochs, a card with a chart, a model, hostile strings,
and a step that fails when asked to."""

from reelflow import FlowSpec, Parameter, current, models, step
from reelflow.cards import Image, Markdown, ProgressBar, Table, VegaChart, card


class UiFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.5, type=float, help="learning rate")
    fail = Parameter("fail", default=False, type=bool, help="make the evaluate step fail")
    epochs = Parameter("epochs", default=5, type=int)

    @card
    @step
    def start(self):
        self.note = "<script>alert('artifact')</script>"
        self.table = [[1, "a"], [2, "b"]]
        print("hello from start <script>alert('log')</script>")
        self.next(self.train)

    @card(type="blank", id="training", title="Training report")
    @step
    def train(self):
        bar = ProgressBar(max=self.epochs, label="epochs")
        current.card.append(Markdown("# Training <script>alert('card')</script>\n- alpha: **%s**" % self.alpha))
        current.card.append(bar)
        losses = []
        for epoch in range(self.epochs):
            loss = 1.0 / (epoch + 1) * self.alpha
            losses.append({"epoch": epoch, "loss": loss})
            current.log_metric("loss", loss, step=epoch)
            bar.update(epoch + 1)
            print(f"epoch {epoch} loss {loss:.4f}")
        current.card.refresh()
        current.card.append(Table(losses))
        current.card.append(VegaChart({
            "mark": {"type": "line", "point": True}, "data": {"values": losses},
            "encoding": {"x": {"field": "epoch", "type": "quantitative"},
                         "y": {"field": "loss", "type": "quantitative"}}}))
        current.card.append(Image(bytes(_tiny_png())))
        current.log_metrics({"ndcg@10": 0.3 + self.alpha / 10, "hr@10": 0.8})
        self.model = {"weights": [self.alpha, 2 * self.alpha]}
        models.register("ui-model", self.model, alias="champion", metrics={"ndcg@10": 0.3 + self.alpha / 10})
        self.next(self.evaluate)

    @step
    def evaluate(self):
        if self.fail:
            raise ValueError("evaluation failed on purpose")
        self.score = 0.9
        self.next(self.end)

    @step
    def end(self):
        pass


def _tiny_png() -> bytes:
    import struct
    import zlib

    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * 8 for _ in range(8))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    UiFlow()
