from emotion_app import ui


def test_dialogue_gets_a_row_and_a_bar_per_turn_and_long_pastes_are_cut_with_a_note(monkeypatch):
    monkeypatch.setattr(ui, "MAX_DIALOGUE_LINES", 3)
    text = "Ross: I got the tickets!\n\nRachel: For tonight?\nRoss: Yes! Front row.\nRachel: I love you!"
    figure, rows, message = ui.analyze_text(text, dialogue=True)
    assert [row[0] for row in rows] == ["Ross", "Rachel", "Ross"]
    assert "first 3 of 4 lines" in message and "text-dialogue@" in message
    assert len(figure.data) == 7 and list(figure.data[0].x) == [1, 2, 3]  # one stacked trace per emotion
    assert figure.data[0].customdata[1] == "Rachel: For tonight?"


def test_single_text_gets_bars_and_empty_text_a_message():
    figure, rows, message = ui.analyze_text("I am so happy today!")
    assert "**happy**" in message and len(figure.data) == 1
    assert ui.analyze_text("   ", dialogue=True)[2].startswith("⚠️ empty text")
