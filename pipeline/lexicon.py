"""Small word lists about what a photograph shows besides the pose, shared by analyze (what the image adds)
and the claim parser (a posture verb whose subject is a thing: "papers are lying on the desk").

Not exhaustive on purpose: they name the common cases; analyze's measured count of added words is the real
figure, and the claim parser only needs the things that are commonly said to lie, stand or sit.
"""

from __future__ import annotations


def word_set(words: str) -> frozenset[str]:
    """The distinct words of a space-separated list."""
    return frozenset(words.split())


# Clothes, objects held or used, and the scene.
WORD_CLASSES: dict[str, frozenset[str]] = {
    "clothes": word_set(
        "shirt t-shirt tshirt jersey jacket coat hoodie sweater sweatshirt vest dress skirt trousers pants "
        "jeans shorts leggings uniform suit tie hat cap helmet hood scarf glove gloves shoe shoes sneaker "
        "sneakers boot boots sandal sandals sock socks sunglasses glasses goggles apron costume swimsuit "
        "bikini tracksuit polo blouse tank belt wristwatch headband mask bandana overalls kimono robe gown "
        "sleeve sleeves sleeveless collar"
    ),
    "objects": word_set(
        "ball racket racquet bat stick club bicycle bike skateboard surfboard ski skis snowboard board rope "
        "weight weights dumbbell barbell kettlebell mat chair bench table desk laptop computer phone "
        "smartphone cup mug glass bottle bag backpack box book paper papers guitar microphone instrument "
        "drum piano violin tool broom shovel rake hammer wheelchair stone truck car vehicle engine remote "
        "device camera umbrella horse dog ladder bucket towel net goal frisbee paddle oar kayak canoe boat "
        "sword knife pan pot plate food stroller cart tablet keyboard controller leash hoop puck"
    ),
    "scene": word_set(
        "indoor indoors outdoor outdoors room kitchen bedroom bathroom gym hall stage studio office street "
        "road sidewalk park field court pitch track rink ice pool water beach sand snow grass lawn forest "
        "tree trees garden yard lot parking floor wall walls ceiling sky mountain mountains river lake sea "
        "ocean city building buildings house home arena stadium stands crowd audience background backdrop "
        "sunny sunlit sunlight daylight night window windows door fence trail hill shore dock church "
        "classroom library store shop restaurant bar market garage warehouse"
    ),
}
# Things a description may say lie, stand or sit that are neither clothes nor objects above.
ANIMALS_AND_THINGS = word_set(
    "dog dogs cat cats bird birds horse horses cow cows sheep animal animals toy toys clothes clothing "
    "leaves flowers plant plants pillow pillows blanket blankets sign signs statue lamp tent bikes bicycles "
    "cars bags boxes books bottles balls chairs tables shoes boots"
)
